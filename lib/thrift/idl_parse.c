/* Lexer and recursive-descent parser for one .thrift file. Builds the
 * definitions of an idl_doc in the loader's arena; type names are left as
 * references (resolved later, once every file is loaded) and const values as
 * expressions (typed later against their declared type). Includes are loaded
 * through the loader as soon as they are seen. Annotations are parsed and
 * dropped. Nesting (types, const values) is bounded by TCH_THRIFT_MAX_DEPTH so
 * hostile input cannot exhaust the stack. */
#include "thrift_internal.h"
#include "utf8.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum tok_kind { TOK_EOF, TOK_IDENT, TOK_INT, TOK_DOUBLE, TOK_STRING, TOK_PUNCT } tok_kind;

typedef struct token {
    tok_kind kind;
    const char *text; /* into the source; for strings, the decoded bytes */
    size_t len;
    int64_t i;
    double d;
    int line, col;
} token;

typedef struct parser {
    idl_loader *ld;
    idl_doc *doc;
    arena *ar;
    tch_error *err;
    const char *src; /* NUL-terminated copy of the text */
    size_t len, pos;
    int line, col;
    token tok; /* current, not yet consumed */
} parser;

/* ---------------------------------------------------------------- errors */

static void describe(const token *t, char *buf, size_t n) {
    switch (t->kind) {
    case TOK_EOF:
        snprintf(buf, n, "end of file");
        break;
    case TOK_STRING:
        snprintf(buf, n, "string literal");
        break;
    case TOK_INT:
    case TOK_DOUBLE:
        snprintf(buf, n, "number '%.*s'", (int)(t->len > 40 ? 40 : t->len), t->text);
        break;
    default:
        snprintf(buf, n, "'%.*s'", (int)(t->len > 40 ? 40 : t->len), t->text);
    }
}

static int fail_at(parser *p, int line, int col, const char *msg) {
    return tch_error_set(p->err, TCH_EPARSE, "%s:%d:%d: %s", p->doc->path, line, col, msg);
}

static int expected(parser *p, const char *what) {
    char found[64];
    describe(&p->tok, found, sizeof found);
    return tch_error_set(p->err, TCH_EPARSE, "%s:%d:%d: expected %s, found %s", p->doc->path, p->tok.line,
                         p->tok.col, what, found);
}

static int nomem(parser *p) { return tch_error_set(p->err, TCH_ENOMEM, "%s: out of memory", p->doc->path); }

/* ----------------------------------------------------------------- lexer */

static int peekc(const parser *p, size_t ahead) {
    return p->pos + ahead < p->len ? (unsigned char)p->src[p->pos + ahead] : -1;
}

static void advance(parser *p) {
    if (p->src[p->pos] == '\n') {
        p->line++;
        p->col = 1;
    } else {
        p->col++;
    }
    p->pos++;
}

static int is_ident_start(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_ident_char(int c) { return is_ident_start(c) || is_digit(c) || c == '.'; }

/* Skips whitespace and the three comment forms. */
static int skip_space(parser *p) {
    for (;;) {
        int c = peekc(p, 0);
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            advance(p);
        } else if (c == '#' || (c == '/' && peekc(p, 1) == '/')) {
            while (peekc(p, 0) != -1 && peekc(p, 0) != '\n')
                advance(p);
        } else if (c == '/' && peekc(p, 1) == '*') {
            int line = p->line, col = p->col;
            advance(p);
            advance(p);
            while (!(peekc(p, 0) == '*' && peekc(p, 1) == '/')) {
                if (peekc(p, 0) == -1)
                    return fail_at(p, line, col, "unterminated comment");
                advance(p);
            }
            advance(p);
            advance(p);
        } else {
            return 0;
        }
    }
}

/* The value of the n hex digits at s, or -1. */
static long hex_digits(const char *s, int n) {
    long v = 0;
    for (int i = 0; i < n; i++) {
        int c = (unsigned char)s[i], d = is_digit(c) ? c - '0'
                                      : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10
                                                                               : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* The escape after the backslash at src[*i] (JavaScript's, as thriftrw reads
 * them): its UTF-8 goes to out, *i moves to its last character. -1 when it
 * is not an escape (a digit, or x/u without their hex digits). */
static long decode_escape(const char *src, size_t *i, size_t end, char *out) {
    static const char from[] = "bfnrtv", to[] = "\b\f\n\r\t\v";
    char c = src[++*i];
    const char *simple = c ? strchr(from, c) : NULL;
    if (simple)
        return (out[0] = to[simple - from], 1);
    if (c == '\n') /* a line continuation */
        return 0;
    if (c == '\r' && *i + 1 < end && src[*i + 1] == '\n') { /* one with CRLF */
        ++*i;
        return 0;
    }
    if (c == '0' && !(*i + 1 < end && is_digit(src[*i + 1])))
        return (out[0] = '\0', 1);
    if (is_digit(c))
        return -1;
    int width = c == 'x' ? 2 : c == 'u' ? 4 : 0;
    if (!width)
        return (out[0] = c, 1); /* \\ \" \' and any other character: itself */
    long cp = *i + (size_t)width < end ? hex_digits(src + *i + 1, width) : -1;
    if (cp < 0)
        return -1;
    *i += (size_t)width;
    if (cp >= 0xd800 && cp < 0xdc00 && *i + 6 < end && src[*i + 1] == '\\' && src[*i + 2] == 'u') {
        long lo = hex_digits(src + *i + 3, 4); /* a surrogate pair: one code point */
        if (lo >= 0xdc00 && lo < 0xe000) {
            *i += 6;
            return (long)tch_utf8_encode((uint32_t)(0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00)),
                                         out);
        }
    }
    if (cp >= 0xd800 && cp < 0xe000)
        cp = 0xfffd; /* a lone surrogate has no UTF-8: as Node writes it */
    return (long)tch_utf8_encode((uint32_t)cp, out);
}

/* String literals: '...' or "..."; backslash escapes are decoded into arena
 * storage (never longer than the source). */
static int lex_string(parser *p) {
    int quote = peekc(p, 0);
    size_t start = p->pos + 1;
    advance(p);
    while (peekc(p, 0) != quote) { /* first pass: find the end */
        if (peekc(p, 0) == -1 || peekc(p, 0) == '\n')
            return fail_at(p, p->tok.line, p->tok.col, "unterminated string literal");
        if (peekc(p, 0) == '\\' && peekc(p, 1) == '\r' && peekc(p, 2) == '\n') {
            advance(p); /* a line continuation with CRLF */
            advance(p);
            advance(p);
            continue;
        }
        if (peekc(p, 0) == '\\' && peekc(p, 1) != -1)
            advance(p);
        advance(p);
    }
    size_t end = p->pos;
    advance(p);
    char *out = tch__arena_alloc(p->ar, end - start + 1);
    if (!out)
        return nomem(p);
    size_t n = 0;
    for (size_t i = start; i < end; i++) {
        if (p->src[i] != '\\') {
            out[n++] = p->src[i];
            continue;
        }
        size_t at = i;
        long k = decode_escape(p->src, &i, end, out + n);
        if (k < 0) {
            char msg[96];
            snprintf(msg, sizeof msg, "invalid escape '\\%.*s' in string literal (at byte %zu)",
                     (int)(end - at - 1 < 5 ? end - at - 1 : 5), p->src + at + 1, at - start + 1);
            return fail_at(p, p->tok.line, p->tok.col, msg);
        }
        n += (size_t)k;
    }
    p->tok.kind = TOK_STRING;
    p->tok.text = out;
    p->tok.len = n;
    return 0;
}

static int lex_number(parser *p) {
    size_t start = p->pos;
    int is_double = 0;
    if (peekc(p, 0) == '+' || peekc(p, 0) == '-')
        advance(p);
    if (peekc(p, 0) == '0' && (peekc(p, 1) == 'x' || peekc(p, 1) == 'X')) {
        advance(p);
        advance(p);
        while (strchr("0123456789abcdefABCDEF", peekc(p, 0) > 0 ? peekc(p, 0) : 'z'))
            advance(p);
    } else {
        while (is_digit(peekc(p, 0)))
            advance(p);
        if (peekc(p, 0) == '.' && is_digit(peekc(p, 1))) {
            is_double = 1;
            advance(p);
            while (is_digit(peekc(p, 0)))
                advance(p);
        }
        if (peekc(p, 0) == 'e' || peekc(p, 0) == 'E') {
            int k = 1;
            if (peekc(p, 1) == '+' || peekc(p, 1) == '-')
                k = 2;
            if (is_digit(peekc(p, (size_t)k))) {
                is_double = 1;
                while (k-- > 0)
                    advance(p);
                while (is_digit(peekc(p, 0)))
                    advance(p);
            }
        }
    }
    p->tok.text = p->src + start;
    p->tok.len = p->pos - start;
    if (is_ident_char(peekc(p, 0)))
        return fail_at(p, p->tok.line, p->tok.col, "malformed number");
    errno = 0;
    char *end = NULL;
    const char *s = p->src + start;
    if (is_double) {
        p->tok.kind = TOK_DOUBLE;
        p->tok.d = strtod(s, &end);
    } else {
        p->tok.kind = TOK_INT;
        const char *digits = (*s == '+' || *s == '-') ? s + 1 : s;
        if (digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
            /* hex may use all 64 bits (0xffffffffffffffff is -1 as in thrift) */
            uint64_t u = strtoull(digits + 2, &end, 16);
            if (end == digits + 2)
                return fail_at(p, p->tok.line, p->tok.col, "malformed number");
            p->tok.i = (int64_t)u;
            if (*s == '-')
                p->tok.i = (int64_t)(0 - u);
        } else {
            p->tok.i = strtoll(s, &end, 10);
        }
    }
    if (errno == ERANGE || end != p->src + p->pos || p->tok.len == 0 ||
        (p->tok.len == 1 && (*s == '+' || *s == '-')))
        return fail_at(p, p->tok.line, p->tok.col, "malformed or out-of-range number");
    return 0;
}

/* Reads the next token into p->tok. */
static int next(parser *p) {
    int rc = skip_space(p);
    if (rc)
        return rc;
    p->tok.line = p->line;
    p->tok.col = p->col;
    p->tok.text = p->src + p->pos;
    p->tok.len = 0;
    int c = peekc(p, 0);
    if (c == -1) {
        p->tok.kind = TOK_EOF;
        return 0;
    }
    if (is_ident_start(c)) {
        size_t start = p->pos;
        while (is_ident_char(peekc(p, 0)))
            advance(p);
        p->tok.kind = TOK_IDENT;
        p->tok.len = p->pos - start;
        return 0;
    }
    int after_sign = (c == '+' || c == '-') ? peekc(p, 1) : c;
    int dot_digit = (c == '+' || c == '-') ? (after_sign == '.' && is_digit(peekc(p, 2)))
                                           : (c == '.' && is_digit(peekc(p, 1)));
    if (is_digit(after_sign) || dot_digit) /* 5, -5, .5, -.5 */
        return lex_number(p);
    if (c == '"' || c == '\'')
        return lex_string(p);
    if (strchr("{}()[]<>,;:=*", c)) {
        advance(p);
        p->tok.kind = TOK_PUNCT;
        p->tok.len = 1;
        return 0;
    }
    char msg[64];
    snprintf(msg, sizeof msg, (c >= 32 && c < 127) ? "unexpected character '%c'" : "unexpected byte 0x%02x", c);
    return fail_at(p, p->line, p->col, msg);
}

/* ------------------------------------------------------ token predicates */

static int is_punct(const parser *p, char c) { return p->tok.kind == TOK_PUNCT && p->tok.text[0] == c; }

static int is_word(const parser *p, const char *w) {
    return p->tok.kind == TOK_IDENT && p->tok.len == strlen(w) && memcmp(p->tok.text, w, p->tok.len) == 0;
}

static int expect_punct(parser *p, char c) {
    if (!is_punct(p, c)) {
        char what[8] = {'\'', c, '\'', 0};
        return expected(p, what);
    }
    return next(p);
}

/* Consumes an optional ',' or ';'. */
static int skip_listsep(parser *p) {
    if (is_punct(p, ',') || is_punct(p, ';'))
        return next(p);
    return 0;
}

/* An identifier copied into the arena; plain forbids '.' (definition names). */
static int take_ident(parser *p, const char *what, int plain, const char **out, int *line, int *col) {
    if (p->tok.kind != TOK_IDENT)
        return expected(p, what);
    if (plain && memchr(p->tok.text, '.', p->tok.len))
        return expected(p, what);
    if (line) {
        *line = p->tok.line;
        *col = p->tok.col;
    }
    *out = tch__arena_strndup(p->ar, p->tok.text, p->tok.len);
    if (!*out)
        return nomem(p);
    return next(p);
}

/* ( key [= "value"] [,;] ... ) — accepted and ignored. */
static int skip_annotations(parser *p) {
    if (!is_punct(p, '('))
        return 0;
    int rc = next(p);
    while (!rc && !is_punct(p, ')')) {
        if (p->tok.kind != TOK_IDENT)
            return expected(p, "annotation name");
        if ((rc = next(p)))
            return rc;
        if (is_punct(p, '=')) {
            if ((rc = next(p)))
                return rc;
            if (p->tok.kind != TOK_STRING)
                return expected(p, "annotation value string");
            if ((rc = next(p)))
                return rc;
        }
        rc = skip_listsep(p);
    }
    return rc ? rc : next(p);
}

/* ------------------------------------------------------------------ types */

static tch_thrift_type *new_type(parser *p, int kind) {
    tch_thrift_type *t = tch__arena_alloc(p->ar, sizeof *t);
    if (t) {
        t->kind = kind;
        t->doc = p->doc;
        t->line = p->tok.line;
        t->col = p->tok.col;
    }
    return t;
}

static const struct {
    const char *name;
    int kind;
} base_types[] = {
    {"bool", TCH_THRIFT_BOOL},     {"byte", TCH_THRIFT_BYTE},   {"i8", TCH_THRIFT_BYTE},
    {"i16", TCH_THRIFT_I16},       {"i32", TCH_THRIFT_I32},     {"i64", TCH_THRIFT_I64},
    {"double", TCH_THRIFT_DOUBLE}, {"string", TCH_THRIFT_STRING}, {"binary", TCH_THRIFT_BINARY},
};

static int parse_type(parser *p, int depth, tch_thrift_type **out);

/* Container element list "<T>" or "<K, V>" after list/set/map. */
static int parse_container(parser *p, tch_thrift_type *t, int depth) {
    int rc = next(p);
    if (!rc && is_word(p, "cpp_type")) { /* map cpp_type "x" <...> */
        if ((rc = next(p)) || p->tok.kind != TOK_STRING)
            return rc ? rc : expected(p, "cpp_type string");
        rc = next(p);
    }
    if (rc || (rc = expect_punct(p, '<')) || (rc = parse_type(p, depth + 1, &t->elem)))
        return rc;
    if (t->kind == TCH_THRIFT_MAP &&
        ((rc = expect_punct(p, ',')) || (rc = parse_type(p, depth + 1, &t->val))))
        return rc;
    if ((rc = expect_punct(p, '>')))
        return rc;
    if (is_word(p, "cpp_type")) { /* list<T> cpp_type "x" */
        if ((rc = next(p)) || p->tok.kind != TOK_STRING)
            return rc ? rc : expected(p, "cpp_type string");
        rc = next(p);
    }
    return rc;
}

static int parse_type(parser *p, int depth, tch_thrift_type **out) {
    if (depth > TCH_THRIFT_MAX_DEPTH)
        return fail_at(p, p->tok.line, p->tok.col, "types nested too deeply");
    if (p->tok.kind != TOK_IDENT)
        return expected(p, "type");
    tch_thrift_type *t = new_type(p, TCH_THRIFT_KIND_REF);
    if (!t)
        return nomem(p);
    int rc = 0;
    for (size_t i = 0; i < sizeof base_types / sizeof base_types[0]; i++)
        if (is_word(p, base_types[i].name))
            t->kind = base_types[i].kind;
    if (t->kind != TCH_THRIFT_KIND_REF) {
        rc = next(p);
    } else if (is_word(p, "list") || is_word(p, "set") || is_word(p, "map")) {
        t->kind = is_word(p, "list") ? TCH_THRIFT_LIST : is_word(p, "set") ? TCH_THRIFT_SET : TCH_THRIFT_MAP;
        rc = parse_container(p, t, depth);
    } else if (is_word(p, "void")) {
        return expected(p, "type");
    } else {
        if ((rc = take_ident(p, "type", 0, &t->ref, NULL, NULL)))
            return rc;
        if (tch__idl_loader_add_ref(p->ld, t))
            return nomem(p);
    }
    if (rc || (rc = skip_annotations(p)))
        return rc;
    *out = t;
    return 0;
}

/* ----------------------------------------------------------- const values */

static cexpr *new_cexpr(parser *p, cexpr_kind kind) {
    cexpr *e = tch__arena_alloc(p->ar, sizeof *e);
    if (e) {
        e->kind = kind;
        e->doc = p->doc;
        e->line = p->tok.line;
        e->col = p->tok.col;
    }
    return e;
}

static int parse_cexpr(parser *p, int depth, cexpr **out);

/* [v, v, ...] or {k: v, ...} */
static int parse_cexpr_container(parser *p, cexpr *e, int depth) {
    char close = e->kind == CEXPR_LIST ? ']' : '}';
    int rc = next(p);
    while (!rc && !is_punct(p, close)) {
        cexpr *item;
        if ((rc = parse_cexpr(p, depth + 1, &item)))
            return rc;
        if (tch__ptrvec_push(p->ar, &e->items, item))
            return nomem(p);
        if (e->kind == CEXPR_MAP) {
            if ((rc = expect_punct(p, ':')) || (rc = parse_cexpr(p, depth + 1, &item)))
                return rc;
            if (tch__ptrvec_push(p->ar, &e->items, item))
                return nomem(p);
        }
        rc = skip_listsep(p);
    }
    return rc ? rc : next(p);
}

static int parse_cexpr(parser *p, int depth, cexpr **out) {
    if (depth > TCH_THRIFT_MAX_DEPTH)
        return fail_at(p, p->tok.line, p->tok.col, "const value nested too deeply");
    cexpr *e = new_cexpr(p, CEXPR_INT);
    if (!e)
        return nomem(p);
    int rc;
    switch (p->tok.kind) {
    case TOK_INT:
        e->i = p->tok.i;
        rc = next(p);
        break;
    case TOK_DOUBLE:
        e->kind = CEXPR_DOUBLE;
        e->d = p->tok.d;
        rc = next(p);
        break;
    case TOK_STRING:
        e->kind = CEXPR_STRING;
        e->s = p->tok.text;
        e->slen = p->tok.len;
        rc = next(p);
        break;
    case TOK_IDENT:
        /* true/false are integer constants in Thrift's own lexer */
        if (is_word(p, "true") || is_word(p, "false")) {
            e->i = is_word(p, "true");
            rc = next(p);
        } else {
            e->kind = CEXPR_IDENT;
            rc = take_ident(p, "value", 0, &e->s, NULL, NULL);
        }
        break;
    default:
        if (is_punct(p, '[') || is_punct(p, '{')) {
            e->kind = is_punct(p, '[') ? CEXPR_LIST : CEXPR_MAP;
            rc = parse_cexpr_container(p, e, depth);
        } else {
            rc = expected(p, "const value");
        }
    }
    if (!rc)
        *out = e;
    return rc;
}

/* ----------------------------------------------------------------- fields */

static int check_field_unique(parser *p, const ptrvec *fields, const tch_thrift_field *f) {
    char msg[160];
    for (size_t i = 0; i < fields->n; i++) {
        const tch_thrift_field *o = fields->items[i];
        if (o->id == f->id) {
            snprintf(msg, sizeof msg, "duplicate field id %d ('%s' and '%s')", f->id, o->name, f->name);
            return fail_at(p, f->line, f->col, msg);
        }
        if (strcmp(o->name, f->name) == 0) {
            snprintf(msg, sizeof msg, "duplicate field name '%s'", f->name);
            return fail_at(p, f->line, f->col, msg);
        }
    }
    return 0;
}

/* [id:] [required|optional] Type name [= value] [annotations] [,;] */
static int parse_field(parser *p, ptrvec *fields, int16_t *auto_id) {
    tch_thrift_field *f = tch__arena_alloc(p->ar, sizeof *f);
    if (!f)
        return nomem(p);
    int rc;
    if (p->tok.kind == TOK_INT) {
        if (p->tok.i < INT16_MIN || p->tok.i > INT16_MAX)
            return fail_at(p, p->tok.line, p->tok.col, "field id out of range");
        f->id = (int16_t)p->tok.i;
        if ((rc = next(p)) || (rc = expect_punct(p, ':')))
            return rc;
    } else {
        /* Apache Thrift gives id-less fields negative ids, counting down */
        f->id = (*auto_id)--;
    }
    if (is_word(p, "required") || is_word(p, "optional")) {
        f->req = is_word(p, "required") ? TCH_THRIFT_REQ_REQUIRED : TCH_THRIFT_REQ_OPTIONAL;
        if ((rc = next(p)))
            return rc;
    }
    if ((rc = parse_type(p, 0, &f->type)) ||
        (rc = take_ident(p, "field name", 1, &f->name, &f->line, &f->col)))
        return rc;
    if (is_punct(p, '=')) {
        if ((rc = next(p)) || (rc = parse_cexpr(p, 0, &f->defexpr)))
            return rc;
    }
    if ((rc = skip_annotations(p)) || (rc = skip_listsep(p)) || (rc = check_field_unique(p, fields, f)))
        return rc;
    return tch__ptrvec_push(p->ar, fields, f) ? nomem(p) : 0;
}

/* Fields up to (and consuming) the closing character. */
static int parse_fields(parser *p, ptrvec *fields, char close) {
    int16_t auto_id = -1;
    int rc = 0;
    while (!rc && !is_punct(p, close)) {
        if (p->tok.kind == TOK_EOF)
            return expected(p, close == '}' ? "field or '}'" : "parameter or ')'");
        rc = parse_field(p, fields, &auto_id);
    }
    return rc ? rc : next(p);
}

/* ------------------------------------------------------------ definitions */

static int lookup_defined(const idl_doc *d, const char *name) {
    const ptrvec *lists[] = {&d->typedefs, &d->consts, &d->enums, &d->structs, &d->services};
    for (size_t l = 0; l < 5; l++)
        for (size_t i = 0; i < lists[l]->n; i++) {
            /* every definition struct starts with its name */
            const char *const *nm = lists[l]->items[i];
            if (strcmp(*nm, name) == 0)
                return 1;
        }
    return 0;
}

/* Definition name: a plain identifier not yet used in this file. */
static int take_def_name(parser *p, const char *what, const char **out, int *line, int *col) {
    int l, c;
    int rc = take_ident(p, what, 1, out, &l, &c);
    if (rc)
        return rc;
    if (line) {
        *line = l;
        *col = c;
    }
    if (lookup_defined(p->doc, *out)) {
        char msg[160];
        snprintf(msg, sizeof msg, "'%s' is already defined", *out);
        return fail_at(p, l, c, msg);
    }
    return 0;
}

static int parse_typedef(parser *p) {
    idl_typedef *td = tch__arena_alloc(p->ar, sizeof *td);
    if (!td)
        return nomem(p);
    int rc;
    if ((rc = next(p)) || (rc = parse_type(p, 0, &td->type)) ||
        (rc = take_def_name(p, "typedef name", &td->name, NULL, NULL)) || (rc = skip_annotations(p)) ||
        (rc = skip_listsep(p)))
        return rc;
    return tch__ptrvec_push(p->ar, &p->doc->typedefs, td) ? nomem(p) : 0;
}

static int parse_const(parser *p) {
    idl_const *c = tch__arena_alloc(p->ar, sizeof *c);
    if (!c)
        return nomem(p);
    c->doc = p->doc;
    int rc;
    if ((rc = next(p)) || (rc = parse_type(p, 0, &c->type)) ||
        (rc = take_def_name(p, "const name", &c->name, NULL, NULL)) || (rc = expect_punct(p, '=')) ||
        (rc = parse_cexpr(p, 0, &c->expr)) || (rc = skip_listsep(p)))
        return rc;
    return tch__ptrvec_push(p->ar, &p->doc->consts, c) ? nomem(p) : 0;
}

static int parse_enum_item(parser *p, tch_thrift_enum *en, int64_t *next_value) {
    enum_item *it = tch__arena_alloc(p->ar, sizeof *it);
    if (!it)
        return nomem(p);
    int line, col, rc;
    if ((rc = take_ident(p, "enum value name", 1, &it->name, &line, &col)))
        return rc;
    if (is_punct(p, '=')) {
        if ((rc = next(p)))
            return rc;
        if (p->tok.kind != TOK_INT)
            return expected(p, "integer");
        *next_value = p->tok.i;
        line = p->tok.line;
        col = p->tok.col;
        if ((rc = next(p)))
            return rc;
    }
    if (*next_value < INT32_MIN || *next_value > INT32_MAX)
        return fail_at(p, line, col, "enum value out of i32 range");
    it->value = (int32_t)(*next_value)++;
    for (size_t i = 0; i < en->items.n; i++)
        if (strcmp(((enum_item *)en->items.items[i])->name, it->name) == 0)
            return fail_at(p, line, col, "duplicate enum value name");
    if ((rc = skip_annotations(p)) || (rc = skip_listsep(p)))
        return rc;
    return tch__ptrvec_push(p->ar, &en->items, it) ? nomem(p) : 0;
}

static int parse_enum(parser *p) {
    tch_thrift_enum *en = tch__arena_alloc(p->ar, sizeof *en);
    if (!en)
        return nomem(p);
    en->self.kind = TCH_THRIFT_ENUM;
    en->self.en = en;
    en->self.doc = p->doc;
    int rc;
    if ((rc = next(p)) || (rc = take_def_name(p, "enum name", &en->name, NULL, NULL)) ||
        (rc = expect_punct(p, '{')))
        return rc;
    int64_t value = 0; /* implicit values start at 0, then previous + 1 */
    while (!is_punct(p, '}')) {
        if ((rc = parse_enum_item(p, en, &value)))
            return rc;
    }
    if ((rc = next(p)) || (rc = skip_annotations(p)))
        return rc;
    return tch__ptrvec_push(p->ar, &p->doc->enums, en) ? nomem(p) : 0;
}

static int parse_struct(parser *p, tch_thrift_struct_kind kind) {
    tch_thrift_struct *st = tch__arena_alloc(p->ar, sizeof *st);
    if (!st)
        return nomem(p);
    st->kind = kind;
    st->doc = p->doc;
    st->self.kind = TCH_THRIFT_STRUCT;
    st->self.st = st;
    st->self.doc = p->doc;
    int rc;
    if ((rc = next(p)) || (rc = take_def_name(p, "struct name", &st->name, &st->line, &st->col)))
        return rc;
    if (is_word(p, "xsd_all") && (rc = next(p)))
        return rc;
    if ((rc = expect_punct(p, '{')) || (rc = parse_fields(p, &st->fields, '}')) || (rc = skip_annotations(p)))
        return rc;
    return tch__ptrvec_push(p->ar, &p->doc->structs, st) ? nomem(p) : 0;
}

/* [oneway] (void | Type) name ( params ) [throws ( fields )] [annotations] [,;] */
static int parse_function(parser *p, tch_thrift_service *svc) {
    tch_thrift_method *m = tch__arena_alloc(p->ar, sizeof *m);
    if (!m)
        return nomem(p);
    m->service = svc;
    int rc = 0;
    if (is_word(p, "oneway")) {
        m->oneway = 1;
        rc = next(p);
    }
    if (!rc && is_word(p, "void"))
        rc = next(p);
    else if (!rc)
        rc = parse_type(p, 0, &m->ret);
    if (rc || (rc = take_ident(p, "method name", 1, &m->name, &m->line, &m->col)))
        return rc;
    tch_thrift_struct *args = tch__arena_alloc(p->ar, sizeof *args);
    if (!args)
        return nomem(p);
    m->args = args;
    if ((rc = expect_punct(p, '(')) || (rc = parse_fields(p, &args->fields, ')')))
        return rc;
    if (is_word(p, "throws")) {
        if ((rc = next(p)) || (rc = expect_punct(p, '(')) || (rc = parse_fields(p, &m->throws, ')')))
            return rc;
    }
    if ((rc = skip_annotations(p)) || (rc = skip_listsep(p)))
        return rc;
    for (size_t i = 0; i < svc->methods.n; i++)
        if (strcmp(((tch_thrift_method *)svc->methods.items[i])->name, m->name) == 0)
            return fail_at(p, m->line, m->col, "duplicate method name");
    return tch__ptrvec_push(p->ar, &svc->methods, m) ? nomem(p) : 0;
}

static int parse_service(parser *p) {
    tch_thrift_service *svc = tch__arena_alloc(p->ar, sizeof *svc);
    if (!svc)
        return nomem(p);
    svc->doc = p->doc;
    int rc;
    if ((rc = next(p)) || (rc = take_def_name(p, "service name", &svc->name, NULL, NULL)))
        return rc;
    if (is_word(p, "extends")) {
        if ((rc = next(p)) ||
            (rc = take_ident(p, "service name", 0, &svc->extends_name, &svc->ext_line, &svc->ext_col)))
            return rc;
    }
    if ((rc = expect_punct(p, '{')))
        return rc;
    while (!is_punct(p, '}')) {
        if (p->tok.kind == TOK_EOF)
            return expected(p, "method or '}'");
        if ((rc = parse_function(p, svc)))
            return rc;
    }
    if ((rc = next(p)) || (rc = skip_annotations(p)))
        return rc;
    return tch__ptrvec_push(p->ar, &p->doc->services, svc) ? nomem(p) : 0;
}

/* ---------------------------------------------------------------- headers */

static int parse_include(parser *p) {
    int rc = next(p);
    if (rc)
        return rc;
    if (p->tok.kind != TOK_STRING)
        return expected(p, "include path string");
    int line = p->tok.line, col = p->tok.col;
    char *path = tch__arena_strndup(p->ar, p->tok.text, p->tok.len);
    if (!path)
        return nomem(p);
    if (memchr(p->tok.text, '\0', p->tok.len))
        return fail_at(p, line, col, "include path contains NUL");
    idl_doc *inc;
    if ((rc = tch__idl_load_include(p->ld, p->doc, path, line, col, &inc)))
        return rc;
    /* the alias is the file name without directory and extension */
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    size_t n = strlen(base);
    if (n > 7 && strcmp(base + n - 7, ".thrift") == 0)
        n -= 7;
    idl_include *ii = tch__arena_alloc(p->ar, sizeof *ii);
    if (!ii || !(ii->alias = tch__arena_strndup(p->ar, base, n)))
        return nomem(p);
    ii->doc = inc;
    if (tch__ptrvec_push(p->ar, &p->doc->includes, ii))
        return nomem(p);
    return next(p);
}

/* namespace <lang|*> <name> — recorded nowhere: TChannel does not need it. */
static int parse_namespace(parser *p) {
    int rc = next(p);
    if (rc)
        return rc;
    if (p->tok.kind != TOK_IDENT && !is_punct(p, '*'))
        return expected(p, "namespace scope");
    if ((rc = next(p)))
        return rc;
    if (p->tok.kind != TOK_IDENT && p->tok.kind != TOK_STRING)
        return expected(p, "namespace name");
    if ((rc = next(p)))
        return rc;
    return skip_annotations(p);
}

static int parse_definition(parser *p) {
    if (is_word(p, "include"))
        return parse_include(p);
    if (is_word(p, "cpp_include")) {
        int rc = next(p);
        if (rc || p->tok.kind != TOK_STRING)
            return rc ? rc : expected(p, "include path string");
        return next(p);
    }
    if (is_word(p, "namespace"))
        return parse_namespace(p);
    if (is_word(p, "typedef"))
        return parse_typedef(p);
    if (is_word(p, "const"))
        return parse_const(p);
    if (is_word(p, "enum"))
        return parse_enum(p);
    if (is_word(p, "struct"))
        return parse_struct(p, TCH_THRIFT_STRUCT_PLAIN);
    if (is_word(p, "union"))
        return parse_struct(p, TCH_THRIFT_STRUCT_UNION);
    if (is_word(p, "exception"))
        return parse_struct(p, TCH_THRIFT_STRUCT_EXCEPTION);
    if (is_word(p, "service"))
        return parse_service(p);
    if (is_punct(p, ';') || is_punct(p, ','))
        return next(p);
    return expected(p, "definition");
}

int tch__idl_parse_doc(idl_loader *ld, idl_doc *doc, tch_slice text) {
    parser p = {.ld = ld, .doc = doc, .ar = tch__idl_loader_arena(ld), .err = tch__idl_loader_err(ld), .line = 1, .col = 1};
    /* a NUL-terminated copy lets strtoll & co. stop safely at the end */
    char *src = tch__arena_strndup(p.ar, (const char *)text.ptr, text.len);
    if (!src)
        return nomem(&p);
    p.src = src;
    p.len = text.len;
    if (p.len >= 3 && memcmp(src, "\xef\xbb\xbf", 3) == 0) { /* a UTF-8 byte order mark */
        p.pos = 3;
    }
    int rc = next(&p);
    while (!rc && p.tok.kind != TOK_EOF)
        rc = parse_definition(&p);
    return rc;
}
