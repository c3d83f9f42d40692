#!/usr/bin/env node
// kafkajs driver for the Caudal interop tests. pytest runs it as
//   node client.js <command>   with a JSON request on stdin,
// and reads one JSON document from stdout. Binary fields (keys, values, header values) travel
// base64-encoded; `null` stands for a null key/value.
//
// Commands:
//   produce    {brokers, topic, compression, idempotent, acks, chunk, records:[{partition,key,value,headers:[[k,v]],timestamp}]}
//              -> {sent, results:[{partition, baseOffset, errorCode}]}
//   fetch      {brokers, topic, partitions, timeoutMs} -> {records:[{partition,offset,key,value,headers,timestamp}], highWatermarks}
//              Reads each partition from offset 0 up to its high watermark through kafkajs's own
//              Fetch request path (decoding, decompression). kafkajs's `consumer` needs consumer-group
//              APIs; this path exercises the same Fetch/record-batch code without a group.
//   offsets    {brokers, topic, timestamp?} -> {latest:[{partition,offset,high,low}], byTimestamp:[...]}
//   createTopic {brokers, topic, numPartitions} -> {created}
//   deleteTopic {brokers, topic} -> {}
//   metadata   {brokers, topics} -> {topics:[{name, partitions:[...] }]}
//
// Compression codecs: gzip is built in; snappy via kafkajs-snappy; lz4 (frame format) via lz4js;
// zstd via @bokuweb/zstd-wasm. All are pure JavaScript/WASM (no native build).
'use strict'

const {
  Kafka,
  logLevel,
  CompressionTypes,
  CompressionCodecs,
} = require('kafkajs')
const SnappyCodec = require('kafkajs-snappy')
const lz4 = require('lz4js')
const zstd = require('@bokuweb/zstd-wasm')

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'

CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec
CompressionCodecs[CompressionTypes.LZ4] = () => ({
  async compress(encoder) {
    return Buffer.from(lz4.compress(encoder.buffer))
  },
  async decompress(buffer) {
    return Buffer.from(lz4.decompress(buffer))
  },
})
let zstdReady = null
CompressionCodecs[CompressionTypes.ZSTD] = () => ({
  async compress(encoder) {
    await zstdReady
    return Buffer.from(zstd.compress(encoder.buffer, 3))
  },
  async decompress(buffer) {
    await zstdReady
    return Buffer.from(zstd.decompress(buffer, { defaultHeapSize: 16 * 1024 * 1024 }))
  },
})

const COMPRESSION = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD,
}

const b64 = buf => (buf === null || buf === undefined ? null : Buffer.from(buf).toString('base64'))
const unb64 = s => (s === null || s === undefined ? null : Buffer.from(s, 'base64'))

function client(brokers) {
  return new Kafka({
    clientId: 'caudal-interop-kafkajs',
    brokers,
    connectionTimeout: 5000,
    requestTimeout: 20000,
    retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 2000 },
    logLevel: logLevel.WARN,
  })
}

// kafkajs keeps its cluster factory behind a private symbol; the fetch command uses it to reach
// the broker-level Fetch API directly.
function createCluster(kafka) {
  const sym = Object.getOwnPropertySymbols(kafka).find(s => String(s).includes('createCluster'))
  if (!sym) throw new Error('kafkajs cluster factory not found')
  return kafka[sym]({ allowAutoTopicCreation: false })
}

async function produce(req) {
  const kafka = client(req.brokers)
  const producer = kafka.producer({
    idempotent: !!req.idempotent,
    maxInFlightRequests: req.idempotent ? 1 : 5,
    allowAutoTopicCreation: false,
  })
  await producer.connect()
  const results = []
  const chunk = req.chunk || 500
  let sent = 0
  try {
    for (let i = 0; i < req.records.length; i += chunk) {
      const messages = req.records.slice(i, i + chunk).map(r => {
        const headers = {}
        for (const [k, v] of r.headers || []) headers[k] = unb64(v)
        const m = { partition: r.partition, key: unb64(r.key), value: unb64(r.value), headers }
        if (r.timestamp !== undefined && r.timestamp !== null) m.timestamp = String(r.timestamp)
        return m
      })
      const res = await producer.send({
        topic: req.topic,
        acks: req.acks === undefined ? -1 : req.acks,
        timeout: 20000,
        compression: COMPRESSION[req.compression || 'none'],
        messages,
      })
      for (const r of res) {
        results.push({ partition: r.partition, baseOffset: r.baseOffset, errorCode: r.errorCode })
      }
      sent += messages.length
    }
  } finally {
    await producer.disconnect()
  }
  return { sent, results }
}

async function fetch(req) {
  const kafka = client(req.brokers)
  const cluster = createCluster(kafka)
  await cluster.connect()
  const deadline = Date.now() + (req.timeoutMs || 60000)
  const records = []
  const highWatermarks = {}
  try {
    await cluster.addTargetTopic(req.topic)
    await cluster.refreshMetadata()
    const metadata = cluster.findTopicPartitionMetadata(req.topic)
    const leaders = {}
    for (const p of metadata) leaders[p.partitionId] = p.leader
    for (const partition of req.partitions) {
      let offset = 0
      let high = -1
      let rounds = 0
      while (Date.now() < deadline && rounds < 100000) {
        rounds += 1
        const broker = await cluster.findBroker({ nodeId: leaders[partition] })
        const response = await broker.fetch({
          replicaId: -1,
          isolationLevel: 1,
          maxWaitTime: 100,
          minBytes: 1,
          maxBytes: 4 * 1024 * 1024,
          topics: [
            {
              topic: req.topic,
              partitions: [{ partition, fetchOffset: String(offset), maxBytes: 1024 * 1024 }],
            },
          ],
        })
        const part = response.responses[0].partitions[0]
        if (part.errorCode !== 0) {
          throw new Error(`fetch ${req.topic}-${partition}@${offset}: error code ${part.errorCode}`)
        }
        high = Number(part.highWatermark)
        for (const m of part.messages) {
          const o = Number(m.offset)
          if (o < offset || m.isControlRecord) continue
          const headers = []
          for (const [k, v] of Object.entries(m.headers || {})) {
            for (const one of Array.isArray(v) ? v : [v]) headers.push([k, b64(one)])
          }
          records.push({
            partition,
            offset: o,
            key: b64(m.key),
            value: b64(m.value),
            headers,
            timestamp: Number(m.timestamp),
          })
          offset = o + 1
        }
        if (offset >= high) break
      }
      highWatermarks[partition] = high
      if (offset < high) throw new Error(`fetch ${req.topic}-${partition}: stopped at ${offset} < ${high}`)
    }
  } finally {
    await cluster.disconnect()
  }
  return { records, highWatermarks }
}

async function offsets(req) {
  const admin = client(req.brokers).admin()
  await admin.connect()
  try {
    const latest = await admin.fetchTopicOffsets(req.topic)
    let byTimestamp = null
    if (req.timestamp !== undefined && req.timestamp !== null) {
      byTimestamp = await admin.fetchTopicOffsetsByTimestamp(req.topic, req.timestamp)
    }
    return { latest, byTimestamp }
  } finally {
    await admin.disconnect()
  }
}

async function createTopic(req) {
  const admin = client(req.brokers).admin()
  await admin.connect()
  try {
    const created = await admin.createTopics({
      waitForLeaders: true,
      timeout: 20000,
      topics: [{ topic: req.topic, numPartitions: req.numPartitions || 1 }],
    })
    return { created }
  } finally {
    await admin.disconnect()
  }
}

async function deleteTopic(req) {
  const admin = client(req.brokers).admin()
  await admin.connect()
  try {
    await admin.deleteTopics({ topics: [req.topic], timeout: 20000 })
    return {}
  } finally {
    await admin.disconnect()
  }
}

async function metadata(req) {
  const admin = client(req.brokers).admin()
  await admin.connect()
  try {
    return await admin.fetchTopicMetadata({ topics: req.topics })
  } finally {
    await admin.disconnect()
  }
}

const COMMANDS = { produce, fetch, offsets, createTopic, deleteTopic, metadata }

async function main() {
  const command = process.argv[2]
  const run = COMMANDS[command]
  if (!run) throw new Error(`unknown command ${command}; one of ${Object.keys(COMMANDS).join(', ')}`)
  const chunks = []
  for await (const c of process.stdin) chunks.push(c)
  const req = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}')
  zstdReady = zstd.init()
  const out = await run(req)
  // exit only once the (possibly large) output is flushed to the pipe
  await new Promise((resolve, reject) =>
    process.stdout.write(JSON.stringify(out), err => (err ? reject(err) : resolve()))
  )
}

main().then(
  () => process.exit(0),
  err => {
    process.stderr.write(`kafkajs ${process.argv[2]} failed: ${err && err.stack ? err.stack : err}\n`)
    if (err && err.type) process.stderr.write(`error type: ${err.type}\n`)
    process.exit(1)
  }
)
