#!/usr/bin/env node
// kafkajs consumer-group member for the Caudal interop tests (tests/interop/test_groups.py).
//
//   node group_consumer.js member '<json config>'
//       One group member. Subscribes to `topic` in `group` and, for every batch: writes a
//       `records` line, waits `processDelayMs` ("processing"), then commits the batch's next
//       offsets synchronously (`committing` line, then `committed` or `commit_failed`). Writes one
//       JSON object per line to stdout, each with `ev` and `t` (wall-clock ms):
//         {"ev":"started"}
//         {"ev":"assignment","partitions":[0,3],"member_id":..,"leader":bool,"protocol":..}
//             after every join+sync (kafkajs rebalances are eager: the full new assignment)
//         {"ev":"rebalancing"}   kafkajs stopped fetching to rejoin (its partitions are revoked)
//         {"ev":"records","records":[[partition, offset, value-as-utf8], ...]}
//         {"ev":"committing","offsets":{"<partition>": nextOffset}}
//         {"ev":"committed","offsets":{...}} | {"ev":"commit_failed","error":..,"type":..}
//         {"ev":"error","name":..,"type":..,"message":..,"fatal":bool}
//         {"ev":"closed"}   after SIGTERM: consumer.disconnect() (LeaveGroup) finished
//       Config: {bootstrap, topic, group, name (client.id), sessionTimeoutMs, heartbeatIntervalMs,
//                rebalanceTimeoutMs, processDelayMs, protocolName (to publish kafkajs's round-robin
//                assigner under another name, e.g. "roundrobin" to share a group with librdkafka
//                and kafka-python), maxBytesPerPartition}
//
//   node group_consumer.js admin '<json request>'
//       {brokers, op: "fetchOffsets"|"describeGroups"|"listGroups", groupId?, groupIds?, topics?}
//       -> one JSON document: kafkajs admin's answer.
'use strict'

const { Kafka, logLevel, PartitionAssigners } = require('kafkajs')

const now = () => Date.now()

function emit(ev, fields = {}) {
  process.stdout.write(JSON.stringify({ ev, t: now(), ...fields }) + '\n')
}

// kafkajs logs go to stderr (the test keeps them per member for failure reports)
const logCreator = () => ({ namespace, level, log }) => {
  const { message, ...extra } = log
  process.stderr.write(
    `${new Date().toISOString()} ${logLevel[level] || level} [${namespace}] ${message} ${JSON.stringify(extra)}\n`
  )
}

function client(brokers, clientId) {
  return new Kafka({
    clientId,
    brokers,
    connectionTimeout: 5000,
    requestTimeout: 20000,
    retry: { retries: 8, initialRetryTime: 100, maxRetryTime: 2000 },
    logLevel: logLevel.INFO,
    logCreator,
  })
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

async function member(conf) {
  const kafka = client([conf.bootstrap], conf.name)
  const assigners = conf.protocolName
    ? [({ cluster }) => ({ ...PartitionAssigners.roundRobin({ cluster }), name: conf.protocolName })]
    : [PartitionAssigners.roundRobin]
  const consumer = kafka.consumer({
    groupId: conf.group,
    sessionTimeout: conf.sessionTimeoutMs || 6000,
    heartbeatInterval: conf.heartbeatIntervalMs || 500,
    rebalanceTimeout: conf.rebalanceTimeoutMs || 20000,
    maxWaitTimeInMs: 100,
    maxBytesPerPartition: conf.maxBytesPerPartition || 1048576,
    partitionAssigners: assigners,
    retry: { retries: 8, initialRetryTime: 100, maxRetryTime: 2000 },
  })
  const { GROUP_JOIN, REBALANCING, CRASH } = consumer.events
  consumer.on(GROUP_JOIN, ({ payload }) => {
    const partitions = (payload.memberAssignment[conf.topic] || []).slice().sort((a, b) => a - b)
    emit('assignment', {
      partitions,
      member_id: payload.memberId,
      leader: payload.isLeader,
      protocol: payload.groupProtocol,
    })
  })
  consumer.on(REBALANCING, () => emit('rebalancing'))
  consumer.on(CRASH, ({ payload }) => {
    const e = payload.error || {}
    emit('error', { name: e.name, type: e.type, message: String(e.message), fatal: !payload.restart })
  })

  let stopping = false
  let exitCode = 0
  const stop = async () => {
    if (stopping) return
    stopping = true
    try {
      await consumer.disconnect()
      emit('closed')
    } catch (e) {
      emit('error', { name: e.name, type: e.type, message: String(e.message), fatal: true })
      exitCode = 1
    }
    process.exit(exitCode)
  }
  process.on('SIGTERM', () => {
    stop()
  })

  await consumer.connect()
  await consumer.subscribe({ topics: [conf.topic], fromBeginning: true })
  emit('started')
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, isRunning, isStale, commitOffsetsIfNecessary }) => {
      if (!isRunning() || isStale() || batch.messages.length === 0) return
      const partition = batch.partition
      emit('records', {
        records: batch.messages.map(m => [
          partition,
          Number(m.offset),
          m.value === null ? null : m.value.toString('utf8'),
        ]),
      })
      if (conf.processDelayMs) await sleep(conf.processDelayMs)
      const last = batch.messages[batch.messages.length - 1].offset
      resolveOffset(last)
      const next = String(Number(last) + 1)
      const offsets = { [partition]: Number(next) }
      emit('committing', { offsets })
      try {
        // consumer group's own commit: this member's generation and member id, no retries
        await commitOffsetsIfNecessary({
          topics: [{ topic: conf.topic, partitions: [{ partition, offset: next }] }],
        })
        emit('committed', { offsets })
      } catch (e) {
        emit('commit_failed', { error: String(e.message), type: e.type || e.name })
        throw e // kafkajs rejoins on rebalance errors
      }
    },
  })
}

async function admin(req) {
  const a = client(req.brokers, 'caudal-interop-kafkajs-admin').admin()
  await a.connect()
  try {
    switch (req.op) {
      case 'fetchOffsets':
        return await a.fetchOffsets({ groupId: req.groupId, topics: req.topics })
      case 'describeGroups':
        return await a.describeGroups(req.groupIds)
      case 'listGroups':
        return await a.listGroups()
      default:
        throw new Error(`unknown admin op ${req.op}`)
    }
  } finally {
    await a.disconnect()
  }
}

async function main() {
  const [command, json] = process.argv.slice(2)
  const conf = JSON.parse(json || '{}')
  if (command === 'member') {
    await member(conf)
    return null // keeps running until SIGTERM/SIGKILL
  }
  if (command === 'admin') {
    const out = await admin(conf)
    await new Promise((resolve, reject) =>
      process.stdout.write(JSON.stringify(out), err => (err ? reject(err) : resolve()))
    )
    process.exit(0)
  }
  throw new Error(`unknown command ${command}; one of member, admin`)
}

main().catch(err => {
  process.stderr.write(`kafkajs group_consumer failed: ${err && err.stack ? err.stack : err}\n`)
  emit('error', { name: err && err.name, type: err && err.type, message: String(err && err.message), fatal: true })
  process.exit(2)
})
