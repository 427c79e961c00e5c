// One-off interop check (see dump_frames.c): reads a stream of frames from
// stdin and checks each call with the Node peer's own code: v2.Frame parsing,
// verifyChecksum with the prior value threaded exactly as
// TChannelV2Handler._checkCallFrame does, and arg reassembly with
// InArgStream's chunk rules. Expects arg k byte i = (i*31 + 7k + 1) & 0xff.
'use strict';
const v2 = require('tchannel/v2');
const chunks = [];
process.stdin.on('data', (d) => chunks.push(d));
process.stdin.on('end', () => {
  const buf = Buffer.concat(chunks);
  const calls = new Map();
  let off = 0, ok = 0, frames = 0;
  while (off < buf.length) {
    const size = buf.readUInt16BE(off);
    const frame = v2.Frame.fromBuffer(buf.slice(off, off + size));
    off += size;
    frames++;
    const body = frame.body;
    let c = calls.get(frame.id);
    if (!c) {
      c = {csum: new v2.Checksum(body.csum.type), args: [[]]};
      calls.set(frame.id, c);
    }
    if (c.csum.type !== body.csum.type) throw new Error('csum type changed');
    const err = body.verifyChecksum(c.csum.val);
    if (err) throw new Error(`id ${frame.id}: ${err.message}`);
    c.csum = body.csum;
    body.args.forEach((a, i) => {
      if (i > 0) c.args.push([]);
      c.args[c.args.length - 1].push(a);
    });
    if (!(body.flags & v2.CallFlags.Fragment)) {
      const args = c.args.map((p) => Buffer.concat(p));
      if (args.length !== 3) throw new Error(`id ${frame.id}: ${args.length} args`);
      args.forEach((a, k) => {
        for (let i = 0; i < a.length; i++) {
          if (a[i] !== ((i * 31 + 7 * k + 1) & 0xff)) {
            throw new Error(`id ${frame.id}: arg${k + 1} byte ${i} differs`);
          }
        }
      });
      ok++;
    }
  }
  console.log(`node_verify: ${ok} calls in ${frames} frames verified by Node`);
});
