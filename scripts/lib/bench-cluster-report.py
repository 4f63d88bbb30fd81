# bench-cluster-report.py RAW.jsonl META.json [NOTE...]: the "Cluster" section of
# docs/benchmarks.md (Markdown, between its markers) from scripts/bench-cluster's raw results.
import collections, json, os, platform, statistics, sys

raw, meta_file, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
recs = [json.loads(l) for l in open(raw) if l.strip()]
meta = json.load(open(meta_file))
notes = list(meta.get("notes", [])) + [n for n in extra if n not in meta.get("notes", [])]
E = os.environ
busy_load = float(meta.get("busy_load") or 0.5 * (os.cpu_count() or 1))
BROKERS = ("ours", "rabbitmq")


def ok(d):
    return isinstance(d, dict) and "error" not in d


def field(key, *path):
    def f(r):
        d = r.get(key)
        if not ok(d):
            return None
        for p in path:
            d = d.get(p) if isinstance(d, dict) else None
        return d
    return f


def c2_parts(r):
    return [r[k] for k in ("node1", "node2", "node3") if k in r]


def c2_sum(name):
    def f(r):
        ps = c2_parts(r)
        return sum(p[name] for p in ps) if ps and all(ok(p) for p in ps) else None
    return f


def c2_max_confirm(q):
    def f(r):
        ps = c2_parts(r)
        if not ps or not all(ok(p) and p.get("confirm_latency_us") for p in ps):
            return None
        return max(p["confirm_latency_us"][q] for p in ps)
    return f


def per_node_cpu(cpu_key, n, msgs):
    # broker CPU µs per message on node n (1-based; 0: all nodes together)
    def f(r):
        c, m = r.get(cpu_key), msgs(r)
        if not c or not m or (n and len(c) < n):
            return None
        return (sum(c) if n == 0 else c[n - 1]) * 1e6 / m
    return f


def pt_cpu(key, per="received"):
    def f(r):
        d = r.get(key)
        return d["perftest_cpu_s"] * 1e6 / d[per] if ok(d) and d.get(per) else None
    return f


def leaders_spread(r):
    c = collections.Counter((r.get("leaders") or {}).values())
    return "/".join(str(c.get(f"node {i}", 0)) for i in (1, 2, 3)) + (f" (+{sum(v for k, v in c.items() if not k.startswith('node '))} other)" if any(not k.startswith("node ") for k in c) else "")


def leader_of(r):
    ls = list((r.get("leaders") or {}).values())
    return ls[0] if ls else None


def drain_rate(r):
    w = r.get("wait") or {}
    return r["messages"] / w["seconds"] if w.get("reached") and w.get("seconds") else None


def cpu_rows(cpu_key, msgs, what, nodes=(1, 2, 3)):
    rows = [(f"broker CPU µs per {what}, node {n}", "lower", per_node_cpu(cpu_key, n, msgs)) for n in nodes]
    if len(nodes) > 1:
        rows.append((f"broker CPU µs per {what}, all nodes", "lower", per_node_cpu(cpu_key, 0, msgs)))
    return rows


def received(key):
    return lambda r: r[key]["received"] if ok(r.get(key)) else None


def ratio_s1(r):
    q, c = r.get("quorum"), r.get("classic")
    return q["receive_rate"] / c["receive_rate"] if ok(q) and ok(c) and c.get("receive_rate") else None


# One perftest run's rows ("run"): C1's and C4's.
RUN = ([("received msg/s", "higher", field("run", "receive_rate")),
        ("sent msg/s", "higher", field("run", "send_rate")),
        ("confirm latency p50 µs", "lower", field("run", "confirm_latency_us", "p50")),
        ("confirm latency p99 µs", "lower", field("run", "confirm_latency_us", "p99")),
        ("nacked publishes", "lower", field("run", "nacked"))]
       + cpu_rows("cpu_s", received("run"), "received msg")
       + [("perftest CPU µs per received msg", "lower", pt_cpu("run"))])

M = {
    "C1": RUN + [("queue leader", "text", leader_of)],
    "C2": [("received msg/s (3 perftests)", "higher", c2_sum("receive_rate")),
           ("sent msg/s", "higher", c2_sum("send_rate")),
           ("confirm latency p50 µs (highest of 3)", "lower", c2_max_confirm("p50")),
           ("confirm latency p99 µs (highest of 3)", "lower", c2_max_confirm("p99")),
           ("nacked publishes", "lower", c2_sum("nacked"))]
          + cpu_rows("cpu_s", c2_sum("received"), "received msg")
          + [("perftest CPU µs per received msg (3 perftests)", "lower",
              lambda r: sum(p["perftest_cpu_s"] for p in c2_parts(r)) * 1e6 / c2_sum("received")(r) if c2_sum("received")(r) else None),
             ("queue leaders on node 1/2/3", "text", leaders_spread)],
    "C3": [("publish msg/s (confirmed backlog)", "higher", field("publish", "send_rate")),
           ("publish confirm latency p50 µs", "lower", field("publish", "confirm_latency_us", "p50")),
           ("publish confirm latency p99 µs", "lower", field("publish", "confirm_latency_us", "p99")),
           ("drain msg/s", "higher", drain_rate),
           ("messages left when the drain gave up (--drain-timeout)", "lower", lambda r: None if (r.get("wait") or {}).get("reached") else (r.get("wait") or {}).get("messages")),
           ("nacked publishes", "lower", field("publish", "nacked"))]
          + cpu_rows("cpu_s", lambda r: r.get("messages"), "message (publish + drain)")
          + [("broker CPU µs per message published, all nodes", "lower", per_node_cpu("publish_cpu_s", 0, lambda r: r.get("messages"))),
             ("broker CPU µs per message drained, all nodes", "lower", per_node_cpu("drain_cpu_s", 0, lambda r: r.get("messages"))),
             ("perftest CPU µs per published msg", "lower", pt_cpu("publish", "sent")),
             ("perftest CPU µs per drained msg", "lower", pt_cpu("drain")),
             ("queue leader", "text", leader_of)],
    "C4": RUN,
    "S1": [("quorum queue received msg/s", "higher", field("quorum", "receive_rate")),
           ("classic durable queue received msg/s", "higher", field("classic", "receive_rate")),
           ("quorum / classic throughput", "higher", ratio_s1, "≥ 0.70 (ours)"),
           ("quorum confirm latency p50 µs", "lower", field("quorum", "confirm_latency_us", "p50")),
           ("quorum confirm latency p99 µs", "lower", field("quorum", "confirm_latency_us", "p99")),
           ("classic confirm latency p50 µs", "lower", field("classic", "confirm_latency_us", "p50")),
           ("classic confirm latency p99 µs", "lower", field("classic", "confirm_latency_us", "p99")),
           ("nacked publishes (quorum + classic)", "lower", lambda r: field("quorum", "nacked")(r) + field("classic", "nacked")(r) if ok(r.get("quorum")) and ok(r.get("classic")) else None)]
          + cpu_rows("quorum_cpu_s", received("quorum"), "received msg, quorum", nodes=(1,))
          + cpu_rows("classic_cpu_s", received("classic"), "received msg, classic", nodes=(1,))
          + [("perftest CPU µs per received msg, quorum", "lower", pt_cpu("quorum")),
             ("perftest CPU µs per received msg, classic", "lower", pt_cpu("classic"))],
}
back = int(meta.get("backlog") or 0)
DESC = {
    "C1": "1P/1C on one quorum queue; perftest on node 1, which declares the queue and so leads it",
    "C2": "20P/20C over 20 quorum queues; one perftest per node with 7/7/6 of the queues (a producer and a consumer each), each declaring its own, so the leaders spread (client-local)",
    "C3": f"a {back:,}-message backlog: one producer on node 1 publishes it into one quorum queue with confirms (-c 1000), no consumer; then {meta.get('drain_consumers', '?')} consumers on node 1 (prefetch 500) drain it until empty (drain rate: backlog / time from the consumers' start to 0 ready)",
    "C4": "4P/4C on one classic durable queue declared on node 2, its home, used through node 1 only (perftest -p on node 1): every publish, delivery and ack crosses the nodes",
    "S1": "single node, no cluster: 4P/4C on one quorum queue, then (order flipping by round) on one classic durable queue, same flags",
}


def fmt(v, name):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if "CPU" in name:
        return f"{v:,.2f}"
    if "/ classic" in name:
        return f"{v:.2f}"
    return f"{v:,.0f}"


rows, scen = [], [s for s in ("C1", "C2", "C3", "C4", "S1") if any(r["scenario"] == s for r in recs)]
for s in scen:
    for metric in M[s]:
        name, better, f = metric[:3]
        vals, busy = {}, {}
        for b in BROKERS:
            vs, nb = [], 0
            for r in recs:
                if r["scenario"] != s or r["broker"] != b:
                    continue
                try:
                    v = f(r)
                except (KeyError, TypeError, ZeroDivisionError, IndexError):
                    v = None
                if v is not None:
                    vs.append(v)
                    nb += (r.get("load_before") or 0) > busy_load
            if better == "text":
                vals[b] = (collections.Counter(vs).most_common(1)[0][0] if vs else None, len(vs))
            else:
                vals[b] = (statistics.median(vs) if vs else None, len(vs))
            busy[b] = nb
        o, t = vals["ours"][0], vals["rabbitmq"][0]
        ratio = f"{o / t:.2f}×" if better != "text" and o is not None and t else "—"
        target = metric[3] if len(metric) > 3 else ""
        label = name if better == "text" else f"{name} ({better} is better)"
        rows.append(f"| {s} | {label} | {fmt(o, name)} | {fmt(t, name)} | {ratio} | {target} | "
                    f"{vals['ours'][1]}/{vals['rabbitmq'][1]} | {busy['ours']}/{busy['rabbitmq']} |")


def cpu_model():
    for l in open("/proc/cpuinfo"):
        if l.startswith("model name"):
            return l.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def mem_gib():
    for l in open("/proc/meminfo"):
        if l.startswith("MemTotal"):
            return int(l.split()[1]) / 2**20
    return 0


nbusy = sum((r.get("load_before") or 0) > busy_load for r in recs)
P = []
P.append("<!-- bench-cluster: begin -->")
P.append("## Cluster\n")
P.append("Generated by `scripts/bench-cluster` (also `scripts/bench --cluster`), which rewrites this section only; "
         "quorum queues on a three-node cluster of ours against a three-node RabbitMQ cluster, and a quorum "
         "queue against a classic one on a single node of each.\n")
P.append(f"- **Command:** `` {meta['argv']} ``")
P.append(f"- **Date:** {meta['start']}; commit {meta['commit']}; {E.get('BENCH_GO_VERSION', '?')}; "
         f"RabbitMQ {E.get('BENCH_RMQ_VERSION') or '?'} (Debian package, default config, fresh nodes)")
P.append(f"- **Machine:** {os.cpu_count()} cores, {mem_gib():.1f} GiB RAM, {cpu_model()}; {platform.system()} {platform.release()}. "
         "All six broker nodes and perftest share it: a cluster here measures replication's CPU and fsync cost, "
         "not a network's.")
P.append("- **Topology:** ours: three `amqp-server` processes, each in its own network namespace "
         "(`scripts/cluster/netns up 3`: veth pairs on a bridge), perftest in the root namespace reaching them "
         f"at their bridge addresses; RabbitMQ: three nodes on 127.0.0.1 (ports {meta.get('rabbit_ports', '?')}) "
         "sharing one Erlang cookie, the second and third joined to the first (`join_cluster`). Both clusters "
         "run through the whole C phase (the idle one costs little); S1 runs after, on one node of each.")
P.append(f"- **Load average (1/5/15 min)** before: {meta['load_before']}, after: {meta['load_after']}. "
         f"Each run's 1-minute load at its start is in the raw results; the last column counts the runs that "
         f"started above {busy_load:g}.")
if nbusy:
    P.append(f"- **⚠ Busy machine:** {nbusy} of {len(recs)} runs started with the 1-minute load above {busy_load:g}: "
             "something else was running, and their figures (ratios too) are not reliable.")
P.append(f"- **Rounds:** {meta['rounds']}, medians shown (n = runs with a value; a failed perftest leaves its run out). "
         f"C1, C2 and S1 run {meta['time']} s; bodies are {meta['size']} bytes.")
P.append(f"- **Raw results:** `{raw}`.")
for n in notes:
    P.append(f"- {n}")
P.append("")
P.append("| Scenario | Metric | Ours | RabbitMQ | Ratio (ours/theirs) | Target | n (ours/theirs) | runs started busy (ours/theirs) |")
P.append("|---|---|---:|---:|---:|---|---:|---:|")
P += rows
P.append("")
P.append("### Cluster scenarios\n")
P.append("All: quorum queues (`-qa x-queue-type=quorum -ad false`; C4: a classic durable queue), persistent (`-f persistent`), publisher confirms "
         "(`-c 100`: at most 100 unconfirmed per producer), prefetch 200, acks with multiple every 50, perftest's "
         "buffered client. Node 1 is our first namespace and RabbitMQ's node on the first port.\n")
cmds = {}
for r in recs:
    for k, c in r.get("cmd", {}).items():
        cmds.setdefault((r["scenario"], k), c)
for s in scen:
    P.append(f"- **{s}** — {DESC[s]}:")
    for (sc, k), c in sorted(cmds.items()):
        if sc == s:
            P.append(f"  - {k}: `{c}`")
P.append("")
P.append("Method: msg/s is perftest's average over the run (received: deliveries over all consumers). Confirm latency "
         "is perftest's publish-to-confirm latency (`confirm_latency_us`); C2 runs three perftests, whose "
         "percentiles are not merged, so it shows the highest of the three. Broker CPU is each node's process "
         "tree's user plus system time (`/proc/PID/stat`; RabbitMQ: beam.smp and its children) over the run, "
         "divided by the messages received (C3: by the backlog, over publishing and draining; the published "
         "and drained rows split it). Queue leaders are read after each run (ours: `GET /api/queues`; RabbitMQ: "
         "`rabbitmqctl list_queues name leader`). Queues are deleted after each run.")
P.append("<!-- bench-cluster: end -->")
print("\n".join(P))
