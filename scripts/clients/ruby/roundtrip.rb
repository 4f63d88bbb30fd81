# Round trip with bunny: see scripts/clients/run. Usage: ruby roundtrip.rb URL
require 'bunny'
require 'timeout'

$step = 'connect'
def step(name) = $step = name
def check(ok, what) = ok || raise("#{what}")

begin
  conn = Bunny.new(ARGV.fetch(0), automatically_recover: false, logger: Logger.new(nil))
  conn.start
  ch = conn.create_channel
  name = "clients-ruby-#{Process.pid}-#{Time.now.to_i}"

  step 'declare'
  q = ch.queue(name, durable: false, auto_delete: false)

  step 'publish with confirms'
  ch.confirm_select
  %w[m1 m2].each { |b| ch.default_exchange.publish(b, routing_key: name) }
  check ch.wait_for_confirms, 'publishes were nacked'

  step 'consume, ack, nack with requeue'
  # Ack the first, nack-requeue the second; it must come back redelivered.
  got = Queue.new
  n = 0
  consumer = q.subscribe(manual_ack: true) do |di, _props, body|
    n += 1
    n == 2 ? ch.nack(di.delivery_tag, false, true) : ch.ack(di.delivery_tag)
    got << [body, di.redelivered?]
  end
  seen = Timeout.timeout(5) { Array.new(3) { got.pop } }
  check seen == [['m1', false], ['m2', false], ['m2', true]], "deliveries: #{seen.inspect}"
  consumer.cancel

  step 'basic.get'
  ch.default_exchange.publish('m3', routing_key: name)
  check ch.wait_for_confirms, 'publish was nacked'
  di, _props, body = q.pop(manual_ack: true)
  check body == 'm3', "basic.get returned #{body.inspect}"
  ch.ack(di.delivery_tag)
  check q.pop(manual_ack: true)[2].nil?, 'basic.get on an empty queue returned a message'

  step 'transaction'
  tx = conn.create_channel
  tx.tx_select
  tx.default_exchange.publish('t1', routing_key: name)
  check q.pop(manual_ack: false)[2].nil?, 'uncommitted publish is visible'
  tx.tx_commit
  check q.pop(manual_ack: false)[2] == 't1', 'committed publish is not visible'
  tx.default_exchange.publish('t2', routing_key: name)
  tx.tx_rollback
  check q.pop(manual_ack: false)[2].nil?, 'rolled-back publish is visible'
  tx.close

  step 'passive declare of a missing queue'
  begin
    conn.create_channel.queue_declare("#{name}-missing", passive: true)
    raise 'passive declare of a missing queue succeeded'
  rescue Bunny::NotFound => e
    check e.channel_close.reply_code == 404, "reply code #{e.channel_close.reply_code}"
  end

  step 'close'
  q.delete
  conn.close
  check conn.closed?, 'connection not closed'
  puts "ok bunny #{Bunny::VERSION}"
rescue StandardError, Timeout::Error => e
  warn "FAIL at #{$step}: #{e.class}: #{e.message}"
  exit 1
end
