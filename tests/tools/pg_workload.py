#!/usr/bin/python3
"""The no-lost-commit workload: WORKERS threads, each committing, one after the
other, a transaction that inserts a row (worker, seq) and adds one to the worker's
counter, against HOST:5432 with synchronous_commit on. Each operation's outcome goes
to OUT as one JSON line, written before the next operation starts:

  ok       COMMIT returned: acknowledged, must survive anything
  failed   an error before COMMIT was sent: must not be there
  unknown  the connection broke during COMMIT: may or may not be there

with the node that served it (`SHOW cluster_name`, set by the agent) for ok, and
`t`, the wall time (seconds) the outcome was known, to place it among the faults.
Runs until the file STOP exists. Usage: pg_workload.py HOST OUT STOP WORKERS
"""
import json
import os
import sys
import threading
import time

import psycopg2

HOST, OUT, STOP, WORKERS = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
lock = threading.Lock()
out = open(OUT, "a", buffering=1)


def record(**entry):
    entry["t"] = round(time.time(), 3)
    with lock:
        out.write(json.dumps(entry) + "\n")
        out.flush()
        os.fsync(out.fileno())


def connect():
    c = psycopg2.connect(host=HOST, port=5432, user="postgres", dbname="postgres",
                         connect_timeout=1, options="-c statement_timeout=5000")
    with c.cursor() as cur:
        cur.execute("SHOW cluster_name")
        node = cur.fetchone()[0]
    return c, node


def worker(w):
    seq = 0
    conn, node = None, None
    while not os.path.exists(STOP):
        if conn is None:
            try:
                conn, node = connect()
            except psycopg2.Error:
                time.sleep(0.05)
                continue
        seq += 1
        phase = "before"
        try:
            with conn.cursor() as cur:
                cur.execute("INSERT INTO ops (worker, seq) VALUES (%s, %s)", (w, seq))
                cur.execute("UPDATE counters SET n = n + 1 WHERE worker = %s", (w,))
            phase = "commit"
            conn.commit()
            record(worker=w, seq=seq, outcome="ok", node=node)
        except psycopg2.Error as e:
            record(worker=w, seq=seq, outcome="unknown" if phase == "commit" else "failed",
                   error=str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
            try:
                conn.close()
            except psycopg2.Error:
                pass
            conn = None


threads = [threading.Thread(target=worker, args=(w,)) for w in range(WORKERS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
