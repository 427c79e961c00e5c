/* Internal: the save path shared by cassette_save.c (whole-file atomic
 * writes) and cassette_journal.c (the append-only journal beside a
 * cassette). Nothing here is public API. */
#ifndef TCH_CASSETTE_JOURNAL_H
#define TCH_CASSETTE_JOURNAL_H

#include "cassette_internal.h"

/* Temp files of a save are `.NAME.tmp.PID.XXXXXX` beside the cassette. */
#define CAS_TEMP_INFIX ".tmp."
#define CAS_JOURNAL_SUFFIX ".journal"

/* Which entries a written document holds. */
typedef bool (*cas_emit_filter)(const tch_cassette *c, const cas_entry *e);
bool tch__cas_keep_saved(const tch_cassette *c, const cas_entry *e);    /* what the file keeps */
bool tch__cas_keep_finished(const tch_cassette *c, const cas_entry *e); /* every finished one */
bool tch__cas_keep_unsaved(const tch_cassette *c, const cas_entry *e);  /* recorded, not saved */
/* Entries from index `from` on that keep accepts, as one cassette document. */
int tch__cas_emit_some(const tch_cassette *c, cas_emit_filter keep, size_t from, tch_buf *out,
                  tch_error *err);

int tch__cas_make_dirs(const tch_allocator *a, const char *dir, tch_error *err);
void tch__cas_fsync_dir(const char *dir);
int tch__cas_write_atomic(const tch_allocator *a, const char *path, tch_slice data,
                          tch_error *err);
/* Before a save writes: allocates what tch__cas_mark_saved will need
 * (TCH_ENOMEM, with nothing written or changed, otherwise). */
int tch__cas_prepare_saved(tch_cassette *c, size_t from, tch_error *err);
/* After a save: recordings become replayable, nothing is dirty. Entries
 * before `from` must hold no unsaved recording. Cannot fail: what it needs
 * was allocated by tch__cas_prepare_saved of the same entries. */
void tch__cas_mark_saved(tch_cassette *c, size_t from);

/* The hash that identifies a file's content to its journal (a B record
 * names the file it adds to, an F record the file it was folded into), fed
 * in pieces so that a file is hashed as it is read. total_len: the whole
 * content's length, known before the first piece. */
typedef struct cas_hasher {
    uint64_t h;
    uint8_t carry[8];
    size_t ncarry;
} cas_hasher;
void tch__cas_hash_init(cas_hasher *hs, uint64_t total_len);
void tch__cas_hash_update(void *hs, const void *p, size_t n); /* a cas_tap_fn */
uint64_t tch__cas_hash_final(const cas_hasher *hs);

/* Called by tch_cassette_open after the file's own interactions were read
 * (file_hash: of the file's bytes as read; exists: 0 when there was no
 * file): adds the recordings of PATH.journal unless a fold already put them
 * in the file. */
int tch__cas_journal_merge(tch_cassette *c, uint64_t file_hash, bool exists, tch_error *err);
/* Replaces the cassette file with data, folding the journal beside it (j's,
 * or a journal some earlier run left): marks the journal folded, renames,
 * then removes the journal. */
int tch__cas_journal_replace_file(tch_cassette *c, tch_cassette_journal *j, tch_slice data,
                             tch_error *err);

#endif
