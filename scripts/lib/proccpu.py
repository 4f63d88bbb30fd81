# proccpu.py PID...: CPU seconds (user + system) used so far by each PID and its live
# descendants, space-separated in the order given (0 for a PID that is gone). Used by
# scripts/bench and scripts/bench-cluster for the brokers' CPU per message.
import os, sys
tick = os.sysconf('SC_CLK_TCK')
def stat(p):
    with open(f'/proc/{p}/stat') as f:
        s = f.read()
    return s[s.rindex(')') + 2:].split()
kids = {}
for d in os.listdir('/proc'):
    if d.isdigit():
        try: kids.setdefault(int(stat(d)[1]), []).append(int(d))
        except (OSError, ValueError, IndexError): pass
def cpu(pid):
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            f = stat(p)
            total += int(f[11]) + int(f[12])  # utime, stime
        except (OSError, ValueError, IndexError):
            pass
        todo += kids.get(p, [])
    return total / tick
print(" ".join(str(cpu(int(a))) for a in sys.argv[1:]))
