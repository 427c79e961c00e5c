#!/usr/bin/env python3
"""Byte compatibility of our Thrift codec with Apache Thrift's Python library.

Generates Python code from rich.thrift (thrift --gen py) into a temp dir,
builds values with the generated classes, serializes them with
TBinaryProtocol (no envelope: obj.write(protocol)) and renders each as the JSON
our C library uses (see lib/include/tchannel/thrift.h). thrift_ref_tool then:
  1. encodes our JSON with our encoder        -> must equal Python's bytes,
  2. decodes Python's bytes with our decoder  -> JSON must equal ours,
  3. re-encodes what it decoded               -> must equal Python's bytes,
and Python reads back the bytes we produced and compares objects.
Also checks that unknown fields and known ids with another wire type are
skipped (Extended / WrongType decoded as Narrow).
"""
import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--thrift", default="thrift")
    ap.add_argument("--idl", required=True)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="thrift-ref-")
    subprocess.run([args.thrift, "-r", "--gen", "py", "-out", tmp, args.idl], check=True,
                   stderr=subprocess.DEVNULL)
    sys.path.insert(0, tmp)
    from thrift.protocol import TBinaryProtocol
    from thrift.Thrift import TType
    from thrift.transport import TTransport
    import rich.ttypes as R
    import rich.Rich as RichSvc
    import rich_base.ttypes as B
    import rich_base.BaseService as BaseSvc

    # Where an I32 is an enum (thrift_spec does not say): (struct, field) ->
    # enum class, or ("key", enum class) for map keys.
    enums = {
        ("Everything", "status"): R.Status,
        ("Everything", "color"): B.Color,
        ("Everything", "by_status"): ("key", R.Status),
        ("Base", "color"): B.Color,
    }

    def to_json(v, ttype, targs, enum=None):
        if ttype == TType.STRUCT:
            cls = targs[0]
            out = {}
            for spec in cls.thrift_spec:
                if spec is None:
                    continue
                fid, ft, fname, fargs, _ = spec
                fv = getattr(v, fname)
                if fv is None:
                    continue
                out[fname] = to_json(fv, ft, fargs, enums.get((cls.__name__, fname)))
            return out
        if ttype == TType.STRING:
            return base64.b64encode(v).decode() if targs == "BINARY" else v
        if ttype in (TType.LIST, TType.SET):
            return [to_json(e, targs[0], targs[1]) for e in v]
        if ttype == TType.MAP:
            kt, ka, vt, va = targs[0], targs[1], targs[2], targs[3]
            key_enum = enum[1] if isinstance(enum, tuple) else None
            if kt == TType.STRING or key_enum:
                return {(key_enum._VALUES_TO_NAMES[k] if key_enum else k): to_json(x, vt, va) for k, x in v.items()}
            return [{"key": to_json(k, kt, ka), "value": to_json(x, vt, va)} for k, x in v.items()]
        if ttype == TType.I32 and enum is not None and not isinstance(enum, tuple):
            return enum._VALUES_TO_NAMES[v]
        return v

    def encode(obj):
        t = TTransport.TMemoryBuffer()
        obj.write(TBinaryProtocol.TBinaryProtocol(t))
        return t.getvalue()

    def decode(cls, data):
        prot = TBinaryProtocol.TBinaryProtocol(TTransport.TMemoryBuffer(data))
        if isinstance(cls.__dict__.get("read"), classmethod):  # immutable (exceptions)
            return cls.read(prot)
        obj = cls()
        obj.read(prot)
        return obj

    def js(obj):
        return to_json(obj, TType.STRUCT, (type(obj), None))

    P = R.Point
    full = R.Everything(
        flag=True, b=-128, b8=127, small=-32768, medium=-2147483648, big=-9223372036854775808,
        ratio=-0.1, text="héllo ✓ \"q\"\n", blob=bytes(range(256)), status=R.Status.PURGED,
        ints=[0, 1, -1, 2147483647], tags={"x", "yy", "zzz"}, counts={"a": 9223372036854775807, "b": 0},
        nested={3: [P(x=1, y=2), P(x=-3, y=4)], -9: []},
        deep=[{"k": {1, 2, 3}, "e": set()}, {}], origin=P(x=5, y=6), shape=R.Shape(radius=1.5),
        when=1700000000000, names=["n1", "", "n3"], color=B.Color.VIOLET,
        base=B.Base(name="b", color=B.Color.BLUE), by_status={R.Status.ACTIVE: "on", R.Status.DELETED: "gone"},
        by_num={1: 1e300, -2: -0.0, 3: 5e-324}, blobs=[b"", b"\x00\xff", b"abc"], id="id-1",
        shapes=[R.Shape(point=P(x=0, y=0)), R.Shape(label="L")], ids={7, -7},
        grid={"row": {"col": [1.0, 2.5], "empty": []}, "none": {}})

    cases = [
        ("Everything", full),
        ("Everything", R.Everything()),  # only the IDL defaults
        ("Everything", R.Everything(shape=R.Shape(point=P(x=1, y=1)), tags=set(), ints=[])),
        ("Point", P(x=2147483647, y=-1)),
        ("Shape", R.Shape(label="")),
        ("Oops", R.Oops(message="bad", code=7)),
        ("Base", B.Base()),
        ("rich_base.Base", B.Base(name="x")),
        ("Narrow", R.Narrow(a=1, s="s")),
        ("Rich:echo:args", RichSvc.echo_args(e=R.Everything(id="z"), times=3)),
        ("Rich:echo:result", RichSvc.echo_result(success=full)),
        ("Rich:echo:result", RichSvc.echo_result(oops=R.Oops(message="m"))),
        ("Rich:nothing:result", RichSvc.nothing_result(other=R.Oops(code=1))),
        ("Rich:shapes:args", RichSvc.shapes_args(pts=[P(x=1, y=2)])),
        ("Rich:shapes:result", RichSvc.shapes_result(success={"a": R.Shape(radius=2.0)})),
        ("Rich:ping:result", BaseSvc.ping_result(success="pong")),
    ]
    lines, expect = [], []
    for name, obj in cases:
        data = encode(obj)
        lines.append("%s\t%s\t%s\n" % (name, json.dumps(js(obj)), data.hex()))
        expect.append((name, obj, data, data, js(obj)))

    # Skipping: Extended and WrongType bytes decoded as Narrow.
    narrow = R.Narrow(a=5, s="kept")
    ext = R.Extended(a=5, s="kept", extra=[{1: ["x", "y"]}, {}], p=P(x=1, y=2), ds={0.5, -1.25},
                     all={"e": full}, t=True, by=-1, sh=300, lo=-5, d=2.5, bin=b"\x00\x01")
    wrong = R.WrongType(a="not an i32", s="kept")
    narrow_only_s = R.Narrow(s="kept")
    for src, want in ((ext, narrow), (wrong, narrow_only_s)):
        data = encode(src)
        lines.append("Narrow\t%s\t%s\n" % (json.dumps(js(want)), data.hex()))
        expect.append(("Narrow<-" + type(src).__name__, want, data, encode(want), js(want)))

    out = subprocess.run([args.tool, args.idl], input="".join(lines), capture_output=True, text=True)
    if out.returncode != 0:
        print(out.stderr)
        return 1
    results = out.stdout.splitlines()
    failures = 0
    for (name, obj, data, canonical, want_json), res in zip(expect, results):
        parts = res.split("\t")
        problems = []
        if parts[0] != "ok":
            problems.append("tool error: " + res)
        else:
            enc_hex, dec_json, reenc_hex = parts[1], json.loads(parts[2]), parts[3]
            if enc_hex != canonical.hex():
                problems.append("our encoding differs:\n  ours   %s\n  python %s" % (enc_hex, canonical.hex()))
            if dec_json != want_json:
                problems.append("our decoding differs:\n  ours   %s\n  python %s" % (dec_json, want_json))
            if reenc_hex != canonical.hex():
                problems.append("decode+encode differs:\n  ours   %s\n  python %s" % (reenc_hex, canonical.hex()))
            back = decode(type(obj), bytes.fromhex(enc_hex))
            if back != obj:
                diff = [k for k in vars(obj) if vars(obj)[k] != vars(back).get(k)]
                problems.append("python reads our bytes as a different value (fields %s)" % diff)
        status = "FAIL" if problems else "ok"
        print("%-4s %s (%d bytes)" % (status, name, len(data)))
        for p in problems:
            print("     " + p)
        failures += bool(problems)
    if len(results) != len(expect):
        print("FAIL tool answered %d of %d cases" % (len(results), len(expect)))
        failures += 1
    print("%d cases, %d failures" % (len(expect), failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
