// loopback_guard.js - preloaded (NODE_OPTIONS=--require) into every node-postgres test
// process by benches/driver_suites.sh: no test may reach past this machine. A name
// other than localhost is not looked up (ENOTFOUND, as for a name that does not
// exist: promise-api-tests connects to a made-up host name), and a TCP connection to
// an address outside 127.0.0.0/8 and ::1 fails with ECONNREFUSED before any packet.
'use strict'
const dns = require('dns')
const net = require('net')

const loopbackName = (h) => h === undefined || h === null || h === '' || h === 'localhost'
const loopbackAddr = (a) => /^127\./.test(a) || a === '::1' || a === '::ffff:127.0.0.1'

const realLookup = dns.lookup
dns.lookup = function (hostname, options, callback) {
  if (typeof options === 'function') {
    callback = options
    options = {}
  }
  if (loopbackName(hostname) || (net.isIP(hostname) && loopbackAddr(hostname))) {
    return realLookup.call(dns, hostname, options, callback)
  }
  const err = new Error(`getaddrinfo ENOTFOUND ${hostname} (driver_suites: loopback only)`)
  err.code = 'ENOTFOUND'
  err.hostname = hostname
  process.nextTick(callback, err)
  return {}
}

const realConnect = net.Socket.prototype.connect
net.Socket.prototype.connect = function (...args) {
  let opts = args[0]
  if (Array.isArray(opts)) opts = opts[0]
  let host
  if (opts && typeof opts === 'object') host = opts.path ? 'localhost' : opts.host
  else if (typeof args[1] === 'string') host = args[1]
  if (host && net.isIP(host) && !loopbackAddr(host)) {
    const err = new Error(`connect ECONNREFUSED ${host} (driver_suites: loopback only)`)
    err.code = 'ECONNREFUSED'
    process.nextTick(() => this.destroy(err))
    return this
  }
  return realConnect.apply(this, args)
}
