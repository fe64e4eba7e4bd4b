"""model.py: the seeded event sequence of the fault suite and the state it
must leave, computed independently of the worker (schemas/README.md section 1).

A Model holds, in publish order, every record the driver will produce:
good events (negotiated, renewed, expired with a matching, a non-matching
or no transfer id, on known and unknown connections), duplicates (the same
record published again, right after or much later) and malformed records of
several kinds. For every connection it also keeps the list of states the
connection passes through (None = absent), so an observer can check that
what a worker serves only ever moves forward along that list: a state that
goes back is an event applied twice or out of order.

Every stored EDR carries "seq" (the index of the event that wrote it) and
"eventId", so a reordered or replayed event shows in the entry itself.
"""

import hashlib
import json
import random

DROPPED_MEMBERS = ("@type", "@context", "providerId")

MALFORMED_KINDS = (
    "not-json",
    "no-specversion",
    "bad-specversion",
    "unknown-type",
    "no-edr",
    "edr-no-tpid",
    "no-policy",
    "bad-utf8",
    "empty-value",
    "long-party",
    "tpid-number",
    "data-array",
)


def connection_key(party, address, query, policy):
    raw = "\x1f".join((party, address, query, policy)).encode()
    return hashlib.sha256(raw).hexdigest()


class Conn:
    __slots__ = ("party", "address", "query", "policy", "key", "tp", "n_tp")

    def __init__(self, party, address, query, policy):
        self.party, self.address = party, address
        self.query, self.policy = query, policy
        self.key = connection_key(party, address, query, policy)
        self.tp = None  # transfer id of the entry the model holds
        self.n_tp = 0

    def fields(self):
        return {
            "counter_party_id": self.party,
            "counter_party_address": self.address,
            "query_checksum": self.query,
            "policy_checksum": self.policy,
        }


class Record:
    """One Kafka record to produce."""

    __slots__ = ("idx", "key", "value", "kind", "good", "conn", "partition",
                 "dup_of", "delivered")

    def __init__(self, idx, key, value, kind, good, conn, partition=None,
                 dup_of=None):
        self.idx, self.key, self.value = idx, key, value
        self.kind, self.good, self.conn = kind, good, conn
        self.partition = partition  # explicit partition (sentinels)
        self.dup_of = dup_of
        self.delivered = None  # (partition, offset) from the delivery report


def stored_entry(edr):
    return {k: v for k, v in edr.items() if k not in DROPPED_MEMBERS}


class Model:
    def __init__(self, seed, n_events, n_conns, run_tag):
        self.seed = seed
        self.rng = random.Random(seed)
        self.run_tag = run_tag
        self.records = []
        self.conns = [self._new_conn(i) for i in range(n_conns)]
        self.by_key = {c.key: c for c in self.conns}
        # Per connection key: states in order (None = absent), state 0 is
        # the initial absence.
        self.states = {c.key: [None] for c in self.conns}
        self.current = {c.key: None for c in self.conns}
        self.n_malformed = 0
        self.kind_counts = {}
        self._generate(n_events)

    # ---- generation -------------------------------------------------

    def _hex(self, n):
        return "%0*x" % (n, self.rng.getrandbits(4 * n))

    def _new_conn(self, i):
        party = "BPNL%08d%04d" % (self.rng.randrange(10**8), i)
        address = "https://provider-%d.example.com/api/v1/dsp" % (i % 97)
        return Conn(party, address, self._hex(64), self._hex(64))

    def _edr(self, conn, tp, seq, eid):
        return {
            "@type": "tx:EndpointDataReferenceEntry",
            "@context": {"tx": "https://w3id.org/tractusx/v0.0.1/ns/"},
            "providerId": conn.party,
            "transferProcessId": tp,
            "agreementId": "agr-%s" % self._hex(12),
            "assetId": "asset-%d" % self.rng.randrange(1000),
            "contractNegotiationId": "cn-%s" % self._hex(12),
            "endpoint": conn.address.replace("/dsp", "/public"),
            "authorization": "eyJ%s" % self._hex(120),
            "seq": seq,
            "eventId": eid,
        }

    def _envelope(self, etype, conn_fields, data_extra, eid):
        data = dict(conn_fields)
        data.update(data_extra)
        return {
            "specversion": "1.0",
            "id": eid,
            "source": "urn:connector:fault-suite",
            "type": etype,
            "time": "2026-11-27T10:00:00Z",
            "datacontenttype": "application/json",
            "data": data,
        }

    def _add(self, key, value, kind, good, conn, partition=None,
             dup_of=None):
        r = Record(len(self.records), key, value, kind, good, conn,
                   partition, dup_of)
        self.records.append(r)
        self.kind_counts[kind] = self.kind_counts.get(kind, 0) + 1
        return r

    def _apply(self, conn, etype, edr, tpid, has_tpid):
        """The contract's effect on the model; returns nothing."""
        cur = self.current[conn.key]
        if etype in ("edr.negotiated", "edr.renewed"):
            new = stored_entry(edr)
        elif cur is None:
            new = None
        elif has_tpid and tpid != cur["transferProcessId"]:
            new = cur
        else:
            new = None
        self.current[conn.key] = new
        conn.tp = new["transferProcessId"] if new else None
        self.states[conn.key].append(new)

    def _good(self, conn, etype, idx):
        eid = "%s-%d" % (self.run_tag, idx)
        extra = {}
        tpid, has_tpid, edr = None, False, None
        if etype in ("edr.negotiated", "edr.renewed"):
            if etype == "edr.negotiated" or conn.tp is None:
                conn.n_tp += 1
                tp = "tp-%s-%d" % (conn.key[:12], conn.n_tp)
            else:
                tp = conn.tp
            edr = self._edr(conn, tp, idx, eid)
            extra["edr"] = edr
            kind = etype.split(".")[1]
        else:
            mode = self.rng.random()
            if mode < 0.4:
                kind = "expired-match"
                tpid = conn.tp or "tp-unknown-%d" % idx
                has_tpid = True
            elif mode < 0.7:
                kind = "expired-stale"
                tpid = "tp-%s-%d" % (conn.key[:12],
                                     self.rng.randrange(conn.n_tp + 1))
                if tpid == conn.tp:
                    tpid = "tp-stale-%d" % idx
                has_tpid = True
            else:
                kind = "expired-no-tpid"
            if has_tpid:
                extra["transfer_process_id"] = tpid
        ev = self._envelope(etype, conn.fields(), extra, eid)
        ev["subject"] = tpid or (edr or {}).get("transferProcessId", "")
        value = json.dumps(ev, separators=(",", ":")).encode()
        self._apply(conn, etype, edr, tpid, has_tpid)
        return self._add(conn.key, value, kind, True, conn)

    def _malformed(self, conn, idx):
        kind = self.rng.choice(MALFORMED_KINDS)
        eid = "%s-%d" % (self.run_tag, idx)
        edr = self._edr(conn, "tp-bad-%d" % idx, idx, eid)
        ev = self._envelope("edr.negotiated", conn.fields(), {"edr": edr},
                            eid)
        value = None
        if kind == "not-json":
            value = json.dumps(ev).encode()[: self.rng.randrange(5, 80)]
        elif kind == "no-specversion":
            del ev["specversion"]
        elif kind == "bad-specversion":
            ev["specversion"] = "0.3"
        elif kind == "unknown-type":
            ev["type"] = "edr.revoked"
        elif kind == "no-edr":
            del ev["data"]["edr"]
        elif kind == "edr-no-tpid":
            del ev["data"]["edr"]["transferProcessId"]
        elif kind == "no-policy":
            del ev["data"]["policy_checksum"]
        elif kind == "bad-utf8":
            value = json.dumps(ev).encode().replace(b"asset-", b"as\xff\xfe-", 1)
        elif kind == "empty-value":
            value = b""
        elif kind == "long-party":
            ev["data"]["counter_party_id"] = "B" * 1025
        elif kind == "tpid-number":
            ev["type"] = "edr.expired"
            del ev["data"]["edr"]
            ev["data"]["transfer_process_id"] = 42
        elif kind == "data-array":
            ev["data"] = [conn.party]
        if value is None:
            value = json.dumps(ev, separators=(",", ":")).encode()
        self.n_malformed += 1
        return self._add(conn.key, value, "malformed:" + kind, False, conn)

    def _generate(self, n_events):
        rng = self.rng
        hot = self.conns[: max(1, len(self.conns) // 10)]
        while len(self.records) < n_events:
            idx = len(self.records)
            # A tenth of the connections get half the traffic, so many
            # connections see long histories (and stale expiries).
            conn = rng.choice(hot) if rng.random() < 0.5 else rng.choice(
                self.conns)
            x = rng.random()
            if x < 0.30:
                self._good(conn, "edr.negotiated", idx)
            elif x < 0.52:
                self._good(conn, "edr.renewed", idx)
            elif x < 0.78:
                self._good(conn, "edr.expired", idx)
            elif x < 0.92:
                self._duplicate(idx)
            else:
                self._malformed(conn, idx)

    def _duplicate(self, idx):
        """The same bytes again: right after (a producer retry) or an
        arbitrary earlier event of a connection (a replayed upstream)."""
        goods = [r for r in self.records[-50:] if r.good]
        if not goods:
            return self._good(self.rng.choice(self.conns), "edr.negotiated",
                              idx)
        if self.rng.random() < 0.5:
            orig = goods[-1]
        else:
            orig = self.rng.choice(self.records[: idx])
            while not orig.good:
                orig = self.records[self.rng.randrange(idx)]
        ev = json.loads(orig.value)
        conn = orig.conn
        etype = ev["type"]
        data = ev["data"]
        self._apply(conn, etype, data.get("edr"),
                    data.get("transfer_process_id"),
                    "transfer_process_id" in data)
        return self._add(orig.key, orig.value, "duplicate", True, conn,
                         dup_of=orig.idx)

    def add_sentinels(self, partitions):
        """One negotiated event per partition, produced to it explicitly,
        last: once a worker serves all of them, it applied everything."""
        out = []
        for p in range(partitions):
            conn = Conn("SENTINEL-%s-%d" % (self.run_tag, p),
                        "https://sentinel.example.com/%d" % p,
                        self._hex(64), self._hex(64))
            self.conns.append(conn)
            self.by_key[conn.key] = conn
            self.states[conn.key] = [None]
            self.current[conn.key] = None
            r = self._good(conn, "edr.negotiated", len(self.records))
            r.partition = p
            r.kind = "sentinel"
            out.append(r)
        return out

    # ---- expectations -----------------------------------------------

    def expected(self):
        """connection key -> (conn, entry) of every entry that must exist."""
        return {k: (self.by_key[k], e) for k, e in self.current.items()
                if e is not None}

    def advance(self, key, pos, observed):
        """Position of `observed` (entry or None) in the key's state list
        at or after pos, or -1 when it is not there: the worker served a
        state that lies in the past."""
        states = self.states.get(key)
        if states is None:
            return -1
        for i in range(pos, len(states)):
            if states[i] == observed:
                return i
        return -1
