// Round trip with the RabbitMQ Java client: see scripts/clients/run. Usage: java RoundTrip URL
import com.rabbitmq.client.*;
import com.rabbitmq.client.impl.ClientVersion;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

public class RoundTrip {
    static String step = "connect";

    static void check(boolean ok, String what) {
        if (!ok) throw new IllegalStateException(what);
    }

    static byte[] bytes(String s) { return s.getBytes(StandardCharsets.UTF_8); }

    static String body(GetResponse r) { return r == null ? null : new String(r.getBody(), StandardCharsets.UTF_8); }

    public static void main(String[] args) {
        try {
            run(args[0]);
            System.out.println("ok amqp-client " + ClientVersion.VERSION);
        } catch (Exception e) {
            System.err.println("FAIL at " + step + ": " + e);
            System.exit(1);
        }
    }

    static void run(String url) throws Exception {
        ConnectionFactory factory = new ConnectionFactory();
        factory.setUri(url);
        factory.setAutomaticRecoveryEnabled(false);
        Connection conn = factory.newConnection();
        Channel ch = conn.createChannel();
        String name = "clients-java-" + ProcessHandle.current().pid() + "-" + System.currentTimeMillis() / 1000;

        step = "declare";
        ch.queueDeclare(name, false, false, false, null);

        step = "publish with confirms";
        ch.confirmSelect();
        for (String b : List.of("m1", "m2")) ch.basicPublish("", name, null, bytes(b));
        ch.waitForConfirmsOrDie(5000);

        step = "consume, ack, nack with requeue";
        // Ack the first, nack-requeue the second; it must come back redelivered.
        BlockingQueue<String> got = new LinkedBlockingQueue<>();
        String tag = ch.basicConsume(name, false, new DefaultConsumer(ch) {
            int n;

            @Override
            public void handleDelivery(String ctag, Envelope env, AMQP.BasicProperties props, byte[] body) throws IOException {
                if (++n == 2) getChannel().basicNack(env.getDeliveryTag(), false, true);
                else getChannel().basicAck(env.getDeliveryTag(), false);
                got.add(new String(body, StandardCharsets.UTF_8) + "/" + env.isRedeliver());
            }
        });
        List<String> seen = new ArrayList<>();
        for (int i = 0; i < 3; i++) seen.add(got.poll(5, TimeUnit.SECONDS));
        check(seen.equals(List.of("m1/false", "m2/false", "m2/true")), "deliveries: " + seen);
        ch.basicCancel(tag);

        step = "basic.get";
        ch.basicPublish("", name, null, bytes("m3"));
        ch.waitForConfirmsOrDie(5000);
        GetResponse r = ch.basicGet(name, false);
        check("m3".equals(body(r)), "basic.get returned " + body(r));
        ch.basicAck(r.getEnvelope().getDeliveryTag(), false);
        check(ch.basicGet(name, false) == null, "basic.get on an empty queue returned a message");

        step = "transaction";
        Channel tx = conn.createChannel();
        tx.txSelect();
        tx.basicPublish("", name, null, bytes("t1"));
        check(ch.basicGet(name, true) == null, "uncommitted publish is visible");
        tx.txCommit();
        check("t1".equals(body(ch.basicGet(name, true))), "committed publish is not visible");
        tx.basicPublish("", name, null, bytes("t2"));
        tx.txRollback();
        check(ch.basicGet(name, true) == null, "rolled-back publish is visible");
        tx.close();

        step = "passive declare of a missing queue";
        try {
            conn.createChannel().queueDeclarePassive(name + "-missing");
            throw new IllegalStateException("passive declare of a missing queue succeeded");
        } catch (IOException e) {
            // The client's channel error: an IOException caused by a ShutdownSignalException.
            ShutdownSignalException s = (ShutdownSignalException) e.getCause();
            check(!s.isHardError(), "a connection error, not a channel error: " + s);
            int code = ((AMQP.Channel.Close) s.getReason()).getReplyCode();
            check(code == AMQP.NOT_FOUND, "reply code " + code);
        }

        step = "close";
        ch.queueDelete(name);
        conn.close();
        check(!conn.isOpen(), "connection not closed");
    }
}
