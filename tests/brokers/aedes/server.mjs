// aedes (npm) as a second MQTT broker implementation for the tests: MQTT 3.1.1 only, an
// unbounded window toward subscribers, durable sessions in memory (they survive a client's
// kill -9, not a broker restart). Usage: node server.mjs PORT
import { Aedes } from 'aedes'
import { createServer } from 'node:net'

const port = Number(process.argv[2])
const broker = await Aedes.createBroker({ concurrency: 1000 })
// AEDES_REFUSE_SUBSCRIBE=prefix: filters starting with it are refused, with a SUBACK 0x80
// (AEDES_REFUSE_BY=suback, the default) or by closing the connection (close), as brokers that
// check permissions at SUBSCRIBE do.
const refused = process.env.AEDES_REFUSE_SUBSCRIBE
if (refused) {
  broker.authorizeSubscribe = (client, sub, callback) => {
    if (!sub.topic.startsWith(refused)) return callback(null, sub)
    if (process.env.AEDES_REFUSE_BY === 'close') return callback(new Error(`not authorised: ${sub.topic}`))
    return callback(null, null)
  }
}
const server = createServer(broker.handle)
server.listen(port, '127.0.0.1', () => console.log(`aedes listening on 127.0.0.1:${port}`))
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => broker.close(() => server.close(() => process.exit(0))))
}
