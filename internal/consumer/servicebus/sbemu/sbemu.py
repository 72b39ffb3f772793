#!/usr/bin/python3
"""sbemu: our model of Azure Service Bus over AMQP 1.0, for tests.

This is NOT Azure Service Bus. It is a stand-in written from Microsoft's
documented behaviour that the real azservicebus Go SDK talks to when its
connection string carries UseDevelopmentEmulator=true (plain AMQP, any
host:port). Tests that pass against it show that the wire-level flow works
against our model of the protocol, not that Azure behaves the same.

Run it with Debian's python3 (python3-qpid-proton 0.37):

    /usr/bin/python3 sbemu.py [--port N] [--admin-port N]

It prints one line "READY amqp=<port> admin=<port>" on stdout once both
listeners are up. The admin port serves JSON over HTTP:

    POST /entities            {"kind": "queue"|"topic"|"subscription", "name": ...,
                               "topic": ..., "lockDurationMs": ..., "maxDeliveryCount": ...,
                               "requiresSession": ..., "duplicateDetectionMs": ...}
    GET  /state?entity=<path> messages of a queue, subscription or "<path>/$DeadLetterQueue"
    GET  /entities            every entity and its counts

What is modelled (and where it is simplified):
  - $cbs put-token: every token is accepted (202); nothing is authorised.
  - <entity>/$management: renew-lock, peek-message (204 when none),
    schedule-message, cancel-scheduled-message, update-disposition,
    receive-by-sequence-number, renew-session-lock, get-session-state,
    set-session-state, get-message-sessions. Replies carry an int32
    status-code and the request's message-id as correlation-id.
  - Peek-lock receive only (receive-and-delete is not modelled). Each
    delivery carries x-opt-sequence-number, x-opt-enqueued-time,
    x-opt-locked-until, x-opt-message-state and the delivery count in the
    header (prior failed deliveries; the SDK adds one).
  - accepted = complete; modified = abandon (delivery count +1), or defer
    when undeliverable-here is set; released = unlock without counting;
    rejected = dead-letter (DeadLetterReason / DeadLetterErrorDescription
    from the error info, the rest of the info merged into the application
    properties).
  - Locks expire on a timer and outlive links and connections. A settlement
    after expiry is rejected with com.microsoft:message-lock-lost; a
    renewal after expiry answers 410. Expiry counts a delivery.
  - MaxDeliveryCount: when the count of failed deliveries reaches it, the
    message moves to the DLQ with DeadLetterReason=MaxDeliveryCountExceeded.
    A DLQ never dead-letters again. DLQ messages keep their sequence number.
  - Batches are recognised by shape (every body section a data section that
    holds a whole AMQP message): proton 0.37 does not expose the transfer's
    message format (0x80013700), which real Service Bus goes by.
  - Topics copy each message to every subscription; subscription rules and
    filters are not modelled.
  - Sessions: the com.microsoft:session-filter on the attach (null = accept
    the next session with available messages, else that session), the
    session id and com.microsoft:locked-until-utc (.NET ticks) in the attach
    reply (AcceptNextSession waits for a free session with messages, up to
    90% of com.microsoft:timeout, then detaches with com.microsoft:timeout);
    one receiver holds a session, its messages are delivered in
    sequence order; the session lock expires (the link is detached with
    com.microsoft:session-lock-lost and its unsettled messages count a
    delivery) and is released when its link closes (same). A message's lock
    in a session is the session's lock. A message without SessionId sent to
    a session-enabled entity is refused: on the send link with
    amqp:not-allowed (the SDK does not retry it); through schedule-message
    with status 400, as Service Bus answers, which the SDK retries as a
    connection fault until its retry budget runs out.
  - Duplicate detection: a MessageId seen within the window is accepted and
    dropped.
  - Not modelled: message time-to-live and expiry, auto-forwarding,
    partitioning, transactions, quotas, authorisation, entity size limits.
  - Runtime properties (azservicebus/admin GetQueueRuntimeProperties and
    the like) are not served: the admin client always speaks HTTPS to the
    connection string's host:port (internal/atom/entity_manager.go builds
    "https://<host:port>/"), which is this AMQP listener, and the emulator
    flag does not change that. Tests read counts from GET /state instead.
"""

import base64
import datetime
import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

try:
    from proton import (Array, Condition, Data, Delivery, Described, Endpoint, Message,
                        Terminus, UNDESCRIBED, int32, symbol, timestamp, ubyte, uint, ulong)
    from proton import Handler
    from proton.reactor import Container
except ImportError:  # the Go helper turns exit status 3 into an install hint
    sys.stderr.write("sbemu: python3-qpid-proton is not installed\n")
    sys.exit(3)

TICK = 0.025  # seconds between lock-expiry / schedule / dispatch passes
SESSION_FILTER = symbol("com.microsoft:session-filter")
SESSION_FILTER_CODE = 0x00000137000000C
DLQ = "$DeadLetterQueue"
NOT_FOUND = "amqp:not-found"
DOTNET_EPOCH_TICKS = 621355968000000000
DEFAULT_ACCEPT_SESSION_TIMEOUT = 60.0

# Section descriptors of an AMQP message.
HEADER, DELIVERY_ANN, MESSAGE_ANN, PROPERTIES, APP_PROPS, DATA, SEQUENCE, VALUE, FOOTER = range(0x70, 0x79)


def now_ms():
    return int(time.time() * 1000)


def log(*args):
    if VERBOSE:
        sys.stderr.write("sbemu: " + " ".join(str(a) for a in args) + "\n")
        sys.stderr.flush()


VERBOSE = False


# ---------------------------------------------------------------------------
# Messages as sections, so that what a client sent is relayed byte for byte
# except for what the broker owns (header, message annotations it sets,
# application properties it is asked to modify).

def split_sections(raw):
    """Returns [(code, value, raw_bytes)] of an encoded AMQP message."""
    out = []
    off = 0
    d = Data()
    while off < len(raw):
        d.clear()
        n = d.decode(raw[off:])
        if n <= 0:
            raise ValueError("undecodable section")
        d.rewind()
        d.next()
        v = d.get_object()
        if not isinstance(v, Described):
            raise ValueError("section is not described")
        out.append((int(v.descriptor), v.value, raw[off:off + n]))
        off += n
    return out


def encode(obj):
    d = Data()
    d.put_object(obj)
    return d.encode()


def looks_like_message(b):
    return len(b) >= 3 and b[0] == 0 and b[1] == 0x53 and HEADER <= b[2] <= FOOTER


class Msg:
    """One message in one entity (a topic's copies are separate Msgs)."""

    def __init__(self, raw):
        self.header = [False, None, None, False, 0]
        self.delivery_ann = None
        self.annotations = {}
        self.props_raw = b""
        self.props = [None] * 13
        self.app_props = {}
        self.app_props_modified = False
        self.app_props_raw = b""
        self.body_raw = b""
        self.footer_raw = b""
        self.body = None
        for code, value, chunk in split_sections(raw):
            if code == HEADER:
                h = list(value or [])
                self.header = h + [None] * (5 - len(h))
            elif code == DELIVERY_ANN:
                pass  # delivery annotations are hop-by-hop
            elif code == MESSAGE_ANN:
                self.annotations = dict(value or {})
            elif code == PROPERTIES:
                self.props_raw = chunk
                p = list(value or [])
                self.props = p + [None] * (13 - len(p))
            elif code == APP_PROPS:
                self.app_props_raw = chunk
                self.app_props = dict(value or {})
            elif code in (DATA, SEQUENCE, VALUE):
                self.body_raw += chunk
                if code == DATA and self.body is None:
                    self.body = bytes(value)
            elif code == FOOTER:
                self.footer_raw = chunk
        self.seq = 0
        self.entity = None
        self.state = "active"  # active | scheduled | deferred | locked
        self.deferred = False  # a locked message that was deferred goes back to deferred
        self.delivery_count = int(self.header[4] or 0)
        self.enqueued_ms = now_ms()
        self.scheduled_ms = None
        self.lock_token = None
        self.locked_until = 0
        self.lock_link = None
        self.dl_reason = None
        self.dl_description = None
        t = self.annotations.get(symbol("x-opt-scheduled-enqueue-time"))
        if t is not None:
            self.scheduled_ms = int(t)

    def copy(self):
        c = Msg.__new__(Msg)
        c.__dict__.update(self.__dict__)
        c.header = list(self.header)
        c.annotations = dict(self.annotations)
        c.app_props = dict(self.app_props)
        return c

    @property
    def message_id(self):
        v = self.props[0]
        return None if v is None else str(v)

    @property
    def session_id(self):
        return self.props[10]

    def modify(self, props):
        if props:
            for k, v in props.items():
                self.app_props[str(k)] = v
            self.app_props_modified = True

    def encode(self, extra_annotations=None, delivery_annotations=None):
        h = list(self.header)
        h[4] = uint(self.delivery_count)
        h[0] = bool(h[0]) if h[0] is not None else False
        if h[1] is not None:
            h[1] = ubyte(int(h[1]))
        if h[2] is not None:
            h[2] = uint(int(h[2]))
        h[3] = bool(h[3]) if h[3] is not None else False
        out = [encode(Described(ulong(HEADER), h))]
        if delivery_annotations:
            out.append(encode(Described(ulong(DELIVERY_ANN), delivery_annotations)))
        ann = dict(self.annotations)
        ann[symbol("x-opt-sequence-number")] = self.seq
        ann[symbol("x-opt-enqueued-time")] = timestamp(self.enqueued_ms)
        ann[symbol("x-opt-message-state")] = int32({"active": 0, "locked": 0, "deferred": 1, "scheduled": 2}[self.state]
                                                   if not (self.state == "locked" and self.deferred) else 1)
        if self.state == "locked":
            ann[symbol("x-opt-locked-until")] = timestamp(self.locked_until)
        if extra_annotations:
            ann.update(extra_annotations)
        out.append(encode(Described(ulong(MESSAGE_ANN), ann)))
        out.append(self.props_raw)
        if self.app_props_modified:
            if self.app_props:
                out.append(encode(Described(ulong(APP_PROPS), self.app_props)))
        else:
            out.append(self.app_props_raw)
        out.append(self.body_raw)
        out.append(self.footer_raw)
        return b"".join(out)


def json_value(v):
    if isinstance(v, (bytes, bytearray)):
        return {"binary": base64.b64encode(bytes(v)).decode()}
    if isinstance(v, timestamp):
        return {"timestamp": int(v)}
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, Described):
        return json_value(v.value)
    if isinstance(v, (list, tuple)):
        return [json_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): json_value(x) for k, x in v.items()}
    if isinstance(v, (bool, float, str)) or v is None:
        return v
    if isinstance(v, int):
        return int(v)
    return str(v)


# ---------------------------------------------------------------------------
# Entities.

class Entity:
    """A queue, a subscription, or the dead-letter queue of one of them."""

    def __init__(self, ns, path, lock_ms, max_deliveries, sessions, dup_ms, parent=None):
        self.ns = ns
        self.path = path
        self.lock_ms = lock_ms
        self.max_deliveries = max_deliveries
        self.requires_session = sessions and parent is None
        self.dup_ms = dup_ms if parent is None else 0
        self.parent = parent
        self.messages = {}  # seq -> Msg, in sequence order
        self.seen_ids = {}  # message id -> time (duplicate detection)
        self.consumers = []  # sender links reading this entity
        self.sessions = {}  # session id -> Session
        self.waiting = []  # links waiting for AcceptNextSession, with deadlines
        self.next_seq = 1
        self.redeliveries = 0  # deliveries of messages that had failed deliveries before
        self.dlq = None if parent else Entity(ns, path + "/" + DLQ, lock_ms, max_deliveries, False, 0, self)

    def is_dlq(self):
        return self.parent is not None

    def accepts(self, m):
        """Duplicate detection; True if m is new."""
        if not self.dup_ms or m.message_id is None:
            return True
        t = now_ms()
        for k in [k for k, seen in self.seen_ids.items() if t - seen > self.dup_ms]:
            del self.seen_ids[k]
        if m.message_id in self.seen_ids:
            return False
        self.seen_ids[m.message_id] = t
        return True

    def enqueue(self, m, seq=None):
        m.entity = self
        m.seq = seq if seq is not None else self.take_seq()
        t = now_ms()
        if m.scheduled_ms is not None and m.scheduled_ms > t:
            m.state = "scheduled"
        else:
            m.state = "active"
            m.enqueued_ms = t
        self.messages[m.seq] = m
        return m.seq

    def take_seq(self):
        s = self.next_seq
        self.next_seq += 1
        return s

    def session(self, sid):
        s = self.sessions.get(sid)
        if s is None:
            s = self.sessions[sid] = Session(sid)
        return s

    def counts(self):
        c = {"active": 0, "scheduled": 0, "deferred": 0, "locked": 0}
        for m in self.messages.values():
            c[m.state] += 1
        c["deadLettered"] = len(self.dlq.messages) if self.dlq else 0
        c["redelivered"] = self.redeliveries
        return c


class Session:
    def __init__(self, sid):
        self.id = sid
        self.state = None
        self.link = None
        self.locked_until = 0


class Topic:
    def __init__(self, name, dup_ms):
        self.path = name
        self.subs = {}
        self.dup_ms = dup_ms
        self.seen_ids = {}
        self.next_seq = 1
        self.requires_session = False

    accepts = Entity.accepts

    def take_seq(self):
        s = self.next_seq
        self.next_seq += 1
        return s


class LockLost(Exception):
    pass


class Refused(Exception):
    def __init__(self, status, condition, description):
        super().__init__(description)
        self.status = status
        self.condition = condition
        self.description = description


class Namespace:
    def __init__(self):
        self.lock = threading.RLock()
        self.entities = {}  # path -> Entity (queues, subscriptions and their DLQs)
        self.topics = {}
        self.locks = {}  # lock token (uuid.UUID) -> Msg
        self.operations = {}  # $management operation -> requests served, for tests

    # Admin.

    def create(self, spec):
        kind = spec.get("kind", "queue")
        name = spec["name"]
        lock_ms = int(spec.get("lockDurationMs") or 60000)
        max_d = int(spec.get("maxDeliveryCount") or 10)
        sessions = bool(spec.get("requiresSession"))
        dup_ms = int(spec.get("duplicateDetectionMs") or 0)
        if kind == "topic":
            self.topics.setdefault(name, Topic(name, dup_ms))
            return name
        if kind == "subscription":
            topic = self.topics.get(spec["topic"])
            if topic is None:
                raise KeyError("no topic " + spec["topic"])
            path = spec["topic"] + "/Subscriptions/" + name
            e = self.entities.get(path)
            if e is None:
                e = Entity(self, path, lock_ms, max_d, sessions, 0)
                topic.subs[name] = e
        else:
            path = name
            e = self.entities.get(path) or Entity(self, path, lock_ms, max_d, sessions, dup_ms)
        self.entities[path] = e
        self.entities[e.dlq.path] = e.dlq
        return path

    def entity(self, path):
        e = self.entities.get(path)
        if e is None:
            # The SDK spells subscriptions "<topic>/Subscriptions/<sub>"; be
            # forgiving about case, as Service Bus is.
            for k, v in self.entities.items():
                if k.lower() == path.lower():
                    return v
        return e

    # Sending.

    def send(self, target, m):
        """Enqueues m on a queue or topic; returns the sequence number(s)."""
        q = self.entity(target)
        t = self.topics.get(target)
        if q is None and t is None:
            raise Refused(404, NOT_FOUND, "entity %s does not exist" % target)
        if q is not None and q.is_dlq():
            raise Refused(400, "amqp:not-allowed", "cannot send to a dead-letter queue")
        needs_session = (q.requires_session if q else any(s.requires_session for s in t.subs.values()))
        if needs_session and m.session_id is None:
            raise Refused(400, "amqp:not-allowed",
                          "The SessionId was not set on a message, and it cannot be sent to the entity. "
                          "Entities that have session support enabled can only receive messages that have "
                          "the SessionId set to a valid value.")
        if q is not None:
            if not q.accepts(m):
                log("duplicate dropped", m.message_id)
                return None
            return q.enqueue(m)
        if not t.accepts(m):
            return None
        seq = t.take_seq()
        for sub in t.subs.values():
            sub.enqueue(m.copy(), seq)
        return seq

    # Locks.

    def lock_msg(self, m, link):
        tag, token = new_tag()
        m.state = "locked"
        m.lock_token = token
        m.lock_link = link
        if m.entity.requires_session:
            m.locked_until = m.entity.sessions[m.session_id].locked_until
        else:
            m.locked_until = now_ms() + m.entity.lock_ms
        self.locks[token] = m
        return tag, token

    def locked(self, token):
        m = self.locks.get(token)
        if m is None or m.state != "locked" or m.lock_token != token:
            raise LockLost()
        if m.entity.requires_session:
            s = m.entity.sessions.get(m.session_id)
            if s is None or s.link is None or s.locked_until < now_ms():
                raise LockLost()
        elif m.locked_until < now_ms():
            raise LockLost()
        return m

    def unlock(self, m):
        self.locks.pop(m.lock_token, None)
        m.lock_token = None
        m.lock_link = None
        m.locked_until = 0

    def complete(self, m):
        self.unlock(m)
        del m.entity.messages[m.seq]

    def release(self, m):
        self.unlock(m)
        m.state = "deferred" if m.deferred else "active"

    def abandon(self, m, props=None):
        """A failed delivery: counted, and at MaxDeliveryCount dead-lettered."""
        m.modify(props)
        self.unlock(m)
        m.delivery_count += 1
        e = m.entity
        if not e.is_dlq() and m.delivery_count >= e.max_deliveries:
            self.dead_letter(m, "MaxDeliveryCountExceeded",
                             "Message could not be consumed after %d delivery attempts." % e.max_deliveries)
            return
        m.state = "deferred" if m.deferred else "active"

    def defer(self, m, props=None):
        m.modify(props)
        self.unlock(m)
        m.deferred = True
        m.state = "deferred"

    def dead_letter(self, m, reason, description, props=None):
        if m.lock_token is not None:
            self.unlock(m)
        e = m.entity
        if e.is_dlq():
            # Dead-lettering a dead letter leaves it where it is.
            m.modify(props)
            m.state = "active"
            return
        del e.messages[m.seq]
        m.modify(props)
        m.modify({"DeadLetterReason": reason if reason is not None else "",
                  "DeadLetterErrorDescription": description if description is not None else ""})
        m.annotations[symbol("x-opt-deadletter-source")] = e.path
        m.dl_reason, m.dl_description = reason, description
        m.deferred = False
        e.dlq.messages[m.seq] = m
        m.entity = e.dlq
        m.state = "active"
        m.enqueued_ms = now_ms()

    def settle(self, m, status, reason=None, description=None, props=None):
        if status == "completed":
            self.complete(m)
        elif status == "abandoned":
            self.abandon(m, props)
        elif status == "defered":
            self.defer(m, props)
        elif status == "suspended":
            self.dead_letter(m, reason, description, props)
        elif status == "released":
            self.release(m)
        else:
            raise Refused(400, "amqp:invalid-field", "unknown disposition " + str(status))

    # Time.

    def tick(self):
        """Expires locks and session locks, and activates scheduled messages."""
        t = now_ms()
        lost_sessions = []
        for e in list(self.entities.values()):
            for m in list(e.messages.values()):
                if m.state == "scheduled" and m.scheduled_ms <= t:
                    m.state = "active"
                    m.enqueued_ms = t
                elif m.state == "locked" and not e.requires_session and m.locked_until < t:
                    log("lock expired", e.path, m.seq)
                    self.abandon(m)
            if e.requires_session:
                for s in e.sessions.values():
                    if s.link is not None and s.locked_until < t:
                        lost_sessions.append((e, s))
        return lost_sessions

    def release_session(self, e, s):
        """The session's holder is gone: its unsettled messages count a delivery."""
        s.link = None
        s.locked_until = 0
        for m in list(e.messages.values()):
            if m.state == "locked" and m.session_id == s.id:
                self.abandon(m)

    def next_session(self, e):
        """The unlocked session whose first available message is oldest."""
        for m in e.messages.values():
            if m.state == "active" and m.session_id is not None:
                s = e.sessions.get(m.session_id)
                if s is None or s.link is None:
                    return m.session_id
        return None


def new_tag():
    """A delivery tag (16 ASCII characters: proton 0.37 takes str tags only)
    and the lock token the SDK derives from it (.NET GUID byte order)."""
    tag = uuid.uuid4().hex[:16]
    b = tag.encode()
    swapped = bytes([b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6]]) + b[8:]
    return tag, uuid.UUID(bytes=swapped)


# ---------------------------------------------------------------------------
# AMQP.

class Broker(Handler):
    def __init__(self, ns, port):
        super().__init__()
        self.ns = ns
        self.port = port
        self.links = set()  # every open link, for dispatch
        self.deliveries = {}  # proton delivery -> (Msg, lock token)
        self.container = None

    def on_reactor_init(self, event):
        self.container = event.container
        event.container.listen("127.0.0.1:%d" % self.port)
        event.container.schedule(TICK, self)

    def on_timer_task(self, event):
        with self.ns.lock:
            try:
                for e, s in self.ns.tick():
                    log("session lock expired", e.path, s.id)
                    link = s.link
                    self.ns.release_session(e, s)
                    if link is not None:
                        self.close_link(link, "com.microsoft:session-lock-lost",
                                        "The session lock has expired on the MessageSession.")
                self.expire_waiting()
                self.dispatch()
            except Exception as ex:  # keep the broker alive; the test sees the symptom
                sys.stderr.write("sbemu: tick: %r\n" % ex)
        event.container.schedule(TICK, self)

    # Endpoints.

    def on_connection_remote_open(self, event):
        c = event.connection
        if c.state & Endpoint.LOCAL_UNINIT:
            c.open()

    def on_session_remote_open(self, event):
        s = event.session
        if s.state & Endpoint.LOCAL_UNINIT:
            s.open()

    def on_link_remote_open(self, event):
        with self.ns.lock:
            self.attach(event.link)

    def attach(self, link):
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        link.max_message_size = 256 * 1024 * 1024
        if link.is_receiver:  # the client sends: $cbs, $management, or an entity
            addr = link.remote_target.address or ""
            if addr != "$cbs" and not addr.endswith("/$management"):
                if self.ns.entity(addr) is None and addr not in self.ns.topics:
                    return self.refuse(link, NOT_FOUND, "entity %s does not exist" % addr)
            link.open()
            link.flow(100)
            return
        addr = link.remote_source.address or ""
        link.kind = "reply"
        if addr == "$cbs" or addr.endswith("/$management"):
            link.open()
            self.links.add(link)
            return
        e = self.ns.entity(addr)
        if e is None:
            return self.refuse(link, NOT_FOUND, "entity %s does not exist" % addr)
        link.kind = "consumer"
        link.entity = e
        link.session_id = None
        if e.requires_session:
            filt = None
            fd = link.remote_source.filter
            if fd is not None:
                fd.rewind()
                if fd.next() is not None:
                    filt = fd.get_object()
            sid = None
            if isinstance(filt, dict):
                f = filt.get(SESSION_FILTER)
                sid = f.value if isinstance(f, Described) else f
            if sid is None:
                props = link.remote_properties or {}
                timeout = props.get(symbol("com.microsoft:timeout"))
                # Answered at 90% of the timeout asked for: the SDK asks for
                # its own context deadline less a jitter that can be ~0, so
                # an answer at the very instant would lose the race to it.
                secs = int(timeout) * 0.9 / 1000.0 if timeout is not None else DEFAULT_ACCEPT_SESSION_TIMEOUT
                link.kind = "waiting"
                e.waiting.append((link, time.time() + secs))
                # A timer of its own: the SDK's deadline is only a little
                # later than the timeout it asks for.
                self.container.schedule(secs, Expire(self))
                self.links.add(link)
                return  # answered by dispatch once a session is free, or by expire_waiting
            s = e.session(sid)
            if s.link is not None and s.locked_until >= now_ms():
                return self.refuse(link, "com.microsoft:session-cannot-be-locked",
                                   "The requested session '%s' cannot be accepted. It may be locked by another receiver." % sid)
            self.grant_session(link, e, s)
            return
        link.open()
        self.links.add(link)
        e.consumers.append(link)

    def grant_session(self, link, e, s):
        s.link = link
        s.locked_until = now_ms() + e.lock_ms
        link.session_id = s.id
        link.kind = "consumer"
        link.source.filter.clear()
        link.source.filter.put_object({SESSION_FILTER: Described(ulong(SESSION_FILTER_CODE), s.id)})
        link.properties = {symbol("com.microsoft:locked-until-utc"): s.locked_until * 10000 + DOTNET_EPOCH_TICKS}
        link.open()
        self.links.add(link)
        e.consumers.append(link)
        log("session granted", e.path, s.id)

    def expire_waiting(self):
        t = time.time()
        for e in self.ns.entities.values():
            for item in list(e.waiting):
                link, deadline = item
                if link.state & Endpoint.REMOTE_CLOSED:
                    e.waiting.remove(item)
                elif deadline <= t:
                    e.waiting.remove(item)
                    self.refuse(link, "com.microsoft:timeout", "No sessions available in %s." % e.path)

    def refuse(self, link, cond, desc):
        """Answers an attach with no terminus and detaches with an error, as
        a broker does for a link it will not serve."""
        if link.is_sender:
            link.source.type = Terminus.UNSPECIFIED
        else:
            link.target.type = Terminus.UNSPECIFIED
        link.open()
        link.condition = Condition(cond, desc)
        link.close()
        self.links.discard(link)

    def close_link(self, link, cond, desc):
        self.forget(link)
        if not (link.state & Endpoint.LOCAL_CLOSED):
            link.condition = Condition(cond, desc)
            link.close()

    def forget(self, link):
        """A link is gone. Message locks stay (they outlive links); a session
        held by the link is released."""
        self.links.discard(link)
        e = getattr(link, "entity", None)
        if e is None:
            return
        if link in e.consumers:
            e.consumers.remove(link)
        e.waiting = [w for w in e.waiting if w[0] != link]
        sid = getattr(link, "session_id", None)
        if sid is not None:
            s = e.sessions.get(sid)
            if s is not None and s.link == link:
                self.ns.release_session(e, s)
        for d in [d for d in self.deliveries if d.link == link]:
            del self.deliveries[d]

    def on_link_remote_close(self, event):
        with self.ns.lock:
            self.forget(event.link)
        if not (event.link.state & Endpoint.LOCAL_CLOSED):
            event.link.close()

    def on_link_remote_detach(self, event):
        self.on_link_remote_close(event)

    def on_session_remote_close(self, event):
        with self.ns.lock:
            for link in list(self.links):
                if link.session == event.session:
                    self.forget(link)
        if not (event.session.state & Endpoint.LOCAL_CLOSED):
            event.session.close()

    def on_connection_remote_close(self, event):
        self.drop_connection(event.connection)
        if not (event.connection.state & Endpoint.LOCAL_CLOSED):
            event.connection.close()

    def on_transport_closed(self, event):
        if event.connection is not None:
            self.drop_connection(event.connection)

    def drop_connection(self, conn):
        with self.ns.lock:
            for link in list(self.links):
                if link.connection == conn:
                    self.forget(link)

    # Flow and transfers.

    def on_link_flow(self, event):
        with self.ns.lock:
            self.dispatch()

    def on_delivery(self, event):
        d = event.delivery
        link = d.link
        with self.ns.lock:
            try:
                if link.is_receiver:
                    self.incoming(link, d)
                else:
                    self.disposition(d)
                self.dispatch()
            except Exception as ex:
                sys.stderr.write("sbemu: delivery: %r\n" % ex)

    def incoming(self, link, d):
        if not d.readable or d.partial:
            return
        raw = link.recv(d.pending)
        link.advance()
        if link.credit < 50:
            link.flow(100)
        addr = link.remote_target.address or ""
        if addr == "$cbs" or addr.endswith("/$management"):
            self.rpc(link, addr, raw)
            d.update(Delivery.ACCEPTED)
            d.settle()
            return
        try:
            msgs = self.unbatch(raw)
            for m in msgs:
                self.ns.send(addr, m)
            d.update(Delivery.ACCEPTED)
        except Refused as r:
            d.local.condition = Condition(r.condition, r.description)
            d.update(Delivery.REJECTED)
        except ValueError as ex:
            d.local.condition = Condition("amqp:decode-error", str(ex))
            d.update(Delivery.REJECTED)
        d.settle()

    @staticmethod
    def unbatch(raw):
        sections = split_sections(raw)
        bodies = [s for s in sections if s[0] in (DATA, SEQUENCE, VALUE)]
        if bodies and all(s[0] == DATA and looks_like_message(bytes(s[1])) for s in bodies):
            return [Msg(bytes(s[1])) for s in bodies]
        return [Msg(raw)]

    def disposition(self, d):
        entry = self.deliveries.pop(d, None)
        if not d.updated and not d.remote_state:
            return
        state = d.remote_state
        if entry is None:
            d.settle()
            return
        m, token = entry
        try:
            self.ns.locked(token)
        except LockLost:
            log("settle after lock lost", m.seq)
            d.local.condition = Condition("com.microsoft:message-lock-lost",
                                          "The lock supplied is invalid. Either the lock expired, or the message has already been removed from the queue.")
            d.update(Delivery.REJECTED)
            d.settle()
            return
        if state == Delivery.ACCEPTED:
            self.ns.complete(m)
        elif state == Delivery.RELEASED:
            self.ns.release(m)
        elif state == Delivery.MODIFIED:
            ann = d.remote.annotations or {}
            props = {str(k): v for k, v in ann.items()}
            if d.remote.undeliverable:
                self.ns.defer(m, props)
            else:
                self.ns.abandon(m, props)
        elif state == Delivery.REJECTED:
            cond = d.remote.condition
            info = dict(cond.info or {}) if cond is not None else {}
            info = {str(k): v for k, v in info.items()}
            reason = info.pop("DeadLetterReason", None)
            desc = info.pop("DeadLetterErrorDescription", None)
            self.ns.dead_letter(m, reason, desc, info)
        else:
            self.deliveries[d] = entry  # not a terminal outcome yet
            return
        d.update(state)
        d.settle()

    def dispatch(self):
        """Sends available messages to consumer links with credit, and grants
        sessions to waiting links."""
        for e in list(self.ns.entities.values()):
            if e.requires_session:
                while e.waiting:
                    sid = self.ns.next_session(e)
                    if sid is None:
                        break
                    link, _ = e.waiting.pop(0)
                    if link.state & Endpoint.REMOTE_CLOSED:
                        continue
                    self.grant_session(link, e, e.session(sid))
            ready = [l for l in e.consumers if l.credit > 0 and (l.state & Endpoint.LOCAL_ACTIVE)]
            if ready:
                self.feed(e, ready)
            for l in e.consumers:
                if l.drain_mode and l.credit > 0:
                    l.drained()

    def feed(self, e, ready):
        i = 0
        for m in list(e.messages.values()):
            if not ready:
                return
            if m.state != "active":
                continue
            if e.requires_session:
                s = e.sessions.get(m.session_id)
                link = s.link if s is not None else None
                if link is None or link not in ready:
                    continue
            else:
                link = ready[i % len(ready)]
                i += 1
            if m.delivery_count > 0:
                e.redeliveries += 1
            tag, token = self.ns.lock_msg(m, link)
            d = link.delivery(tag)
            link.send(m.encode())
            link.advance()
            self.deliveries[d] = (m, token)
            if link.credit <= 0:
                ready.remove(link)

    # Management.

    def rpc(self, link, addr, raw):
        req = Message()
        req.decode(raw)
        reply_to = req.reply_to
        props = req.properties or {}
        op = props.get("operation")
        body = req.body if isinstance(req.body, dict) else {}
        status, desc, value = 200, "OK", {}
        if addr == "$cbs":
            status, desc = 202, "Accepted"
        else:
            entity_path = addr[: -len("/$management")]
            try:
                e = self.ns.entity(entity_path)
                if e is None and entity_path not in self.ns.topics:
                    raise Refused(404, NOT_FOUND, "entity %s does not exist" % entity_path)
                value = self.operation(op, entity_path, e, body, link)
                if value is None:
                    status, desc, value = 204, "No Content", {}
            except Refused as r:
                status, desc, value = r.status, r.description, {}
            except LockLost:
                status, desc, value = 410, ("The lock supplied is invalid. Either the lock expired, "
                                            "or the message has already been removed from the queue."), {}
        resp = Message(body=value, correlation_id=req.id,
                       properties={"status-code": int32(status), "status-description": desc})
        for l in self.links:
            if l.connection == link.connection and l.is_sender and (l.remote_target.address or "") == reply_to:
                d = l.delivery(uuid.uuid4().hex[:16])
                l.send(resp.encode())
                l.advance()
                d.settle()
                return
        log("no reply link for", reply_to, [(l.is_sender, l.remote_source.address, l.remote_target.address, l.name) for l in self.links])

    def operation(self, op, path, e, body, link):
        ns = self.ns
        ns.operations[op] = ns.operations.get(op, 0) + 1
        if op == "com.microsoft:renew-lock":
            exps = []
            for tok in elements(body.get("lock-tokens")):
                m = ns.locked(tok)
                if not e.requires_session:
                    m.locked_until = now_ms() + m.entity.lock_ms
                exps.append(timestamp(m.locked_until))
            return {"expirations": Array(UNDESCRIBED, Data.TIMESTAMP, *exps)}
        if op == "com.microsoft:update-disposition":
            status = str(body.get("disposition-status"))
            for tok in elements(body.get("lock-tokens")):
                m = ns.locked(tok)
                props = body.get("properties-to-modify")
                props = {str(k): v for k, v in props.items()} if isinstance(props, dict) else None
                ns.settle(m, status, body.get("deadletter-reason"), body.get("deadletter-description"), props)
            return {}
        if op == "com.microsoft:peek-message":
            start = int(body.get("from-sequence-number") or 0)
            count = int(body.get("message-count") or 1)
            sid = body.get("session-id")
            out = []
            for m in sorted(e.messages.values(), key=lambda m: m.seq):
                if m.seq >= start and (sid is None or m.session_id == sid):
                    out.append({"message": m.encode()})
                    if len(out) >= count:
                        break
            return {"messages": out} if out else None
        if op == "com.microsoft:schedule-message":
            seqs = []
            for entry in elements(body.get("messages")):
                m = Msg(bytes(entry["message"]))
                if m.scheduled_ms is None:
                    raise Refused(400, "amqp:invalid-field", "x-opt-scheduled-enqueue-time is missing")
                seq = ns.send(path, m)
                seqs.append(seq if seq is not None else 0)
            return {"sequence-numbers": Array(UNDESCRIBED, Data.LONG, *seqs)}
        if op == "com.microsoft:cancel-scheduled-message":
            targets = [e] if e is not None else list(ns.topics[path].subs.values())
            for seq in elements(body.get("sequence-numbers")):
                for t in targets:
                    m = t.messages.get(int(seq))
                    if m is not None and m.state == "scheduled":
                        del t.messages[m.seq]
            return {}
        if op == "com.microsoft:receive-by-sequence-number":
            out = []
            for seq in elements(body.get("sequence-numbers")):
                m = e.messages.get(int(seq))
                if m is None or m.state != "deferred":
                    raise Refused(404, NOT_FOUND, "message %s is not deferred in %s" % (seq, path))
                _, token = ns.lock_msg(m, None)
                m.deferred = True
                out.append({"message": m.encode(delivery_annotations={symbol("x-opt-lock-token"): token}),
                            "lock-token": token})
            return {"messages": out}
        if op == "com.microsoft:renew-session-lock":
            s = self.held_session(e, body)
            s.locked_until = now_ms() + e.lock_ms
            for m in e.messages.values():
                if m.state == "locked" and m.session_id == s.id:
                    m.locked_until = s.locked_until
            return {"expiration": timestamp(s.locked_until)}
        if op == "com.microsoft:get-session-state":
            s = self.held_session(e, body)
            return {"session-state": s.state}
        if op == "com.microsoft:set-session-state":
            s = self.held_session(e, body)
            st = body.get("session-state")
            s.state = bytes(st) if st is not None else None
            return {}
        if op == "com.microsoft:get-message-sessions":
            sids = sorted({m.session_id for m in e.messages.values() if m.session_id is not None})
            return {"sessions-ids": sids} if sids else None
        raise Refused(400, "amqp:not-implemented", "operation %s is not modelled" % op)

    def held_session(self, e, body):
        if e is None or not e.requires_session:
            raise Refused(400, "amqp:not-allowed", "entity is not session-enabled")
        s = e.sessions.get(body.get("session-id"))
        if s is None or s.link is None or s.locked_until < now_ms():
            raise LockLost()
        return s


class Expire(Handler):
    def __init__(self, broker):
        super().__init__()
        self.broker = broker

    def on_timer_task(self, event):
        with self.broker.ns.lock:
            self.broker.expire_waiting()


def elements(v):
    if v is None:
        return []
    if isinstance(v, Array):
        return list(v.elements)
    return list(v)


# ---------------------------------------------------------------------------
# HTTP admin / state view.

def message_view(m):
    return {
        "sequenceNumber": m.seq,
        "messageId": m.message_id,
        "sessionId": m.session_id,
        "state": m.state,
        "deliveryCount": m.delivery_count + 1,  # as the SDK reports it (header count + 1)
        "lockedUntilMs": m.locked_until if m.state == "locked" else None,
        "enqueuedTimeMs": m.enqueued_ms,
        "scheduledEnqueueTimeMs": m.scheduled_ms,
        "contentType": None if m.props[6] is None else str(m.props[6]),
        "subject": m.props[3],
        "correlationId": None if m.props[5] is None else str(m.props[5]),
        "applicationProperties": {str(k): json_value(v) for k, v in m.app_props.items()},
        "deadLetterReason": m.dl_reason,
        "deadLetterErrorDescription": m.dl_description,
        "deadLetterSource": json_value(m.annotations.get(symbol("x-opt-deadletter-source"))),
        "body": base64.b64encode(m.body if m.body is not None else b"").decode(),
    }


def make_admin(ns):
    class AdminHandler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            log("http", fmt % args)

        def reply(self, code, obj):
            b = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(b)))
            self.end_headers()
            self.wfile.write(b)

        def do_GET(self):
            u = urlparse(self.path)
            q = parse_qs(u.query)
            with ns.lock:
                if u.path == "/state":
                    e = ns.entity(q.get("entity", [""])[0])
                    if e is None:
                        return self.reply(404, {"error": "no such entity"})
                    msgs = sorted(e.messages.values(), key=lambda m: m.seq)
                    sessions = {sid: {"lockedUntilMs": s.locked_until if s.link is not None else None,
                                      "state": json_value(s.state)}
                                for sid, s in e.sessions.items()}
                    return self.reply(200, {"entity": e.path, "counts": e.counts(),
                                            "messages": [message_view(m) for m in msgs],
                                            "sessions": sessions,
                                            "operations": dict(ns.operations)})
                if u.path == "/entities":
                    return self.reply(200, {p: e.counts() for p, e in ns.entities.items()})
            self.reply(404, {"error": "not found"})

        def do_POST(self):
            u = urlparse(self.path)
            n = int(self.headers.get("Content-Length") or 0)
            try:
                spec = json.loads(self.rfile.read(n) or b"{}")
            except ValueError as ex:
                return self.reply(400, {"error": str(ex)})
            if u.path == "/entities":
                try:
                    with ns.lock:
                        path = ns.create(spec)
                except (KeyError, ValueError) as ex:
                    return self.reply(400, {"error": str(ex)})
                return self.reply(200, {"path": path})
            self.reply(404, {"error": "not found"})

    return AdminHandler


def main(argv):
    global VERBOSE
    port, admin_port = 0, 0
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "--port":
            port = int(args.pop(0))
        elif a == "--admin-port":
            admin_port = int(args.pop(0))
        elif a == "--verbose":
            VERBOSE = True
    if port == 0:
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
    ns = Namespace()
    httpd = ThreadingHTTPServer(("127.0.0.1", admin_port), make_admin(ns))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    broker = Broker(ns, port)
    container = Container(broker)
    # The acceptor is created in on_reactor_init; READY is printed from a
    # first timer so that the port is listening by then.

    class Ready(Handler):
        def on_timer_task(self, event):
            sys.stdout.write("READY amqp=%d admin=%d\n" % (port, httpd.server_address[1]))
            sys.stdout.flush()

    container.schedule(0, Ready())
    container.run()


if __name__ == "__main__":
    main(sys.argv[1:])
