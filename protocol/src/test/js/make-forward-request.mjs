// Builds a FORWARD_REQUEST frame the way docs/protocol.md section 9.2 does with pyarrow, but with
// Apache Arrow's JavaScript implementation, so that the Java decoder is checked against an Arrow
// writer that shares no code with it. Output: the frame file named by argv[2].
import { writeFileSync } from 'fs';
import { Field, Float16, Float32, Int32, List, Uint16, Schema, Struct, RecordBatch, Table, makeData, tableToIPC } from 'apache-arrow';

const ITEM = { bf16: () => new Uint16(), fp16: () => new Float16(), fp32: () => new Float32(), int32: () => new Int32() };

function column(name, dtype, shape, values) {  // values: typed array of the item type's storage
  const item = new Field('item', ITEM[dtype](), false);
  const type = new List(item);
  const child = makeData({ type: item.type, length: values.length, nullCount: 0, data: values });
  const data = makeData({ type, length: 1, nullCount: 0, valueOffsets: Int32Array.of(0, values.length), child });
  const field = new Field(name, type, false, new Map([['distca.dtype', dtype], ['distca.shape', JSON.stringify(shape)]]));
  return { field, data };
}

function payload(columns) {
  const schema = new Schema(columns.map(c => c.field));
  const struct = makeData({ type: new Struct(schema.fields), length: 1, nullCount: 0, children: columns.map(c => c.data) });
  return tableToIPC(new Table([new RecordBatch(schema, struct)]), 'stream');
}

function frame(type, requestId, meta, body) {
  const json = Buffer.from(JSON.stringify(meta), 'utf8');
  const pad = (8 - (32 + json.length) % 8) % 8;
  const header = Buffer.alloc(32);
  header.writeUInt32BE(0x44434131, 0); header.writeUInt8(1, 4); header.writeUInt8(type, 5);
  header.writeUInt16BE(body.length > 0 ? 1 : 0, 6); header.writeBigUInt64BE(BigInt(requestId), 8);
  header.writeUInt32BE(json.length, 16); header.writeUInt32BE(body.length, 20);
  return Buffer.concat([header, json, Buffer.alloc(pad), Buffer.from(body)]);
}

// q: [3, 4, 8] as bf16 bit patterns of (i - 48) / 16; k, v: [3, 2, 8] fp16 raw bits of (i - 24) / 8.
const bf16 = x => { const f = new Float32Array([x]); return new Uint32Array(f.buffer)[0] >>> 16; };  // exact for these values
const q = Uint16Array.from({ length: 96 }, (_, i) => bf16((i - 48) / 16));
const fp16bits = x => {  // exact for multiples of 1/8 in [-3, 3]
  if (x === 0) return 0;
  const sign = x < 0 ? 0x8000 : 0; let a = Math.abs(x); let e = Math.floor(Math.log2(a));
  const m = Math.round((a / 2 ** e - 1) * 1024); return sign | ((e + 15) << 10) | m;
};
const k = Uint16Array.from({ length: 48 }, (_, i) => fp16bits((i - 24) / 8));
const v = Uint16Array.from({ length: 48 }, (_, i) => fp16bits((24 - i) / 8));
const meta = {
  job: 'js', step: 7, deadline_epoch_ms: 1767225600000, heads_q: 4, heads_kv: 2, head_dim: 8, dtype: 'bf16',
  scale: 8 ** -0.5,
  tasks: [{ task_id: 1, attempt: 0, q_len: 3, kv_segment: 0, kv_start: 0, kv_len: 3, causal: true, diagonal: 0 }],
  kv_segment_lens: [3],
};
writeFileSync(process.argv[2], frame(16, 5, meta, payload([
  column('q', 'bf16', [3, 4, 8], q), column('k', 'fp16', [3, 2, 8], k), column('v', 'fp16', [3, 2, 8], v)])));
