#!/usr/bin/env node
// kafkajs partition reassignment driver for the Caudal interop tests. pytest runs it as
//   node reassign.js <command>   with a JSON request on stdin,
// and reads one JSON document from stdout.
//
// Commands:
//   alter  {brokers, topic, partition, replicas} -> {}
//          admin.alterPartitionReassignments (AlterPartitionReassignments v0)
//   list   {brokers, topic?, partitions?} -> {topics:[{name, partitions:[{partition, replicas,
//          addingReplicas, removingReplicas}]}]}
//          admin.listPartitionReassignments (ListPartitionReassignments v0); without `topic`,
//          every reassignment in progress.
'use strict'

const { Kafka, logLevel } = require('kafkajs')

async function readStdin() {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return JSON.parse(Buffer.concat(chunks).toString() || '{}')
}

async function main() {
  const command = process.argv[2]
  const request = await readStdin()
  const kafka = new Kafka({
    clientId: 'caudal-interop-reassign',
    brokers: request.brokers,
    logLevel: logLevel.NOTHING,
    retry: { retries: 5 },
  })
  const admin = kafka.admin()
  await admin.connect()
  try {
    let result
    if (command === 'alter') {
      await admin.alterPartitionReassignments({
        topics: [
          {
            topic: request.topic,
            partitionAssignment: [{ partition: request.partition, replicas: request.replicas }],
          },
        ],
        timeout: 5000,
      })
      result = {}
    } else if (command === 'list') {
      const topics = request.topic
        ? [{ topic: request.topic, partitions: request.partitions }]
        : null
      result = await admin.listPartitionReassignments({ topics, timeout: 5000 })
    } else {
      throw new Error(`unknown command ${command}`)
    }
    process.stdout.write(JSON.stringify(result))
  } finally {
    await admin.disconnect()
  }
}

main().catch(error => {
  process.stderr.write(`${error.stack || error}\n`)
  process.exit(1)
})
