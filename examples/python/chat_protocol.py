"""The client half's signed layouts and checks (docs/protocol.md), for
examples/python/chat_client.py: the protos, the frame and digest layouts,
the relay's certificates, a message's checks and chain, private messages
(signed, sealed to a client-only member, opened and checked), and the TLS
key and certificate signing request a member registers with.

The byte layouts are those of proto/src/trust.rs, proto/src/chain.rs and
proto/src/sealed.rs; tests/tests/python_client.rs checks that these
functions refuse what the Rust ones refuse.
"""

import hashlib
import struct
import sys
import tempfile
import time
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import NameOID
from nacl.exceptions import CryptoError
from nacl.public import SealedBox
from nacl.signing import SigningKey, VerifyKey

REPO_PROTOS = Path(__file__).resolve().parents[2] / "proto" / "proto"
GENESIS = bytes(32)
MAX_TEXT_BYTES = 4096  # a message's or private message's text
MAX_SEALED_BYTES = 8192  # SealedPrivate.sealed
MAX_CLOCK_SKEW_MS = 5 * 60 * 1000  # a private message's freshness
NODE_NAME_SUFFIX = ".node.invalid"  # a node's TLS name: NODE_ID.node.invalid

relay_pb = relay_grpc = chat_pb = chat_grpc = None  # set by load_protos


def load_protos(proto_dir):
    """Generates the stubs from the repository's protos into a temp dir
    (grpcio-tools bundles protoc) and imports them."""
    out = tempfile.mkdtemp(prefix="chat-stubs-")
    from grpc_tools import protoc

    files = ["relay/v1/relay.proto", "chat/v1/chat.proto"]
    args = ["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}"]
    if protoc.main(args + files) != 0:
        sys.exit(f"protoc failed on the protos in {proto_dir}")
    sys.path.insert(0, out)
    global relay_pb, relay_grpc, chat_pb, chat_grpc
    from relay.v1 import relay_pb2 as relay_pb, relay_pb2_grpc as relay_grpc
    from chat.v1 import chat_pb2 as chat_pb, chat_pb2_grpc as chat_grpc


# --- Signed layouts (proto/src/trust.rs, proto/src/chain.rs) ---------------


def frame(*parts):
    """Each part as its length (8 bytes, big-endian), then its bytes."""
    out = bytearray()
    for p in parts:
        p = p.encode() if isinstance(p, str) else p
        out += struct.pack(">Q", len(p)) + p
    return bytes(out)


def be64(n):
    """An integer part: 8 bytes big-endian (int64 two's complement)."""
    return struct.pack(">q", n) if n < 0 else struct.pack(">Q", n)


def now_ms():
    return int(time.time() * 1000)


def verify(key_bytes, payload, signature):
    try:
        Ed25519PublicKey.from_public_bytes(bytes(key_bytes)).verify(bytes(signature), payload)
        return True
    except (InvalidSignature, ValueError):
        return False


def m_from(m):
    return getattr(m, "from")  # `from` is a Python keyword


def message_fields(room, m):
    """The signed fields of a message (SendMessage or served ChatMessage)."""
    return [b"chat.v1.ChatMessage", room, m.id, m_from(m), m.text,
            be64(m.sent_at_unix_ms), be64(m.chain_seq), m.chain_prev]


def message_digest(room, m):
    """What the sender's next message chains to: it covers the signature."""
    return hashlib.sha256(frame(*message_fields(room, m), m.signature)).digest()


def log_step(previous, seq, epoch, entry_digest):
    return hashlib.sha256(frame(b"chat.v1.LogEntry", previous, be64(seq), be64(epoch),
                                entry_digest)).digest()


def reset_digest(r):
    grant = r.certificate.grant if r.HasField("certificate") else b""
    # min_users is a uint32: 4 bytes big-endian, unlike every other integer.
    return hashlib.sha256(frame(b"chat.v1.RoomReset", be64(r.seq),
                                struct.pack(">I", r.min_users), r.by, grant)).digest()


def private_payload(m):
    """What a PrivateMessage's signature covers."""
    return frame(b"chat.v1.PrivateMessage", m.id, m_from(m), m.from_node_id, m.to,
                 m.to_node_id, m.text, be64(m.sent_at_unix_ms))


def check_text(text):
    """A message's text: 1 byte to 4 KiB, not only whitespace."""
    if not text.strip():
        raise ValueError("the text is empty")
    if len(text.encode()) > MAX_TEXT_BYTES:
        raise ValueError(f"the text is over {MAX_TEXT_BYTES} bytes")


class Relay:
    """The root of trust: the relay's key, pinned at registration."""

    def __init__(self, key):
        self.key = key

    def host_term(self, cert):
        if not verify(self.key, frame(b"relay.v1.HostTerm", cert.term), cert.signature):
            raise ValueError("host term not signed by the relay")
        return relay_pb.HostTerm.FromString(cert.term)

    def name(self, cert):
        if not verify(self.key, frame(b"relay.v1.NameGrant", cert.grant), cert.signature):
            raise ValueError("name certificate not signed by the relay")
        grant = relay_pb.NameGrant.FromString(cert.grant)
        if grant.expires_at_unix_ms < now_ms():
            raise ValueError("name certificate expired")
        return grant

    def reset(self, cert):
        if not verify(self.key, frame(b"relay.v1.ResetGrant", cert.grant), cert.signature):
            raise ValueError("reset certificate not signed by the relay")
        return relay_pb.ResetGrant.FromString(cert.grant)

    def member(self, record, name):
        """A LookupMember answer for `name`: its name certificate binds that
        name to the record's node id and key."""
        grant = self.name(record.certificate)
        if (grant.name, grant.node_id, grant.public_key) != (
                name, record.node_id, record.public_key) or record.name != name:
            raise ValueError(f"the relay's record of {name!r} does not match its certificate")
        return grant


def check_message(relay, room, m):
    """A served ChatMessage of `room`: its sender's name certificate is the
    relay's and names `from`, and the key it binds signed the message."""
    grant = relay.name(m.sender)
    if grant.name != m_from(m):
        raise ValueError(f"the certificate names {grant.name!r}")
    if not verify(grant.public_key, frame(*message_fields(room, m)), m.signature):
        raise ValueError("bad signature")
    return grant


def judge(known, m):
    """Where message m stands in its sender's chain (proto/src/chain.rs)."""
    first = m.chain_seq == 1
    if m.chain_seq == 0 or first != (len(m.chain_prev) == 0) or (
            not first and len(m.chain_prev) != 32):
        return "malformed"
    if known is None:
        return "follows"
    seq, digest, sent_at = known
    if first:
        return "new_chain" if m.sent_at_unix_ms > sent_at else "repeat"
    if m.chain_seq <= seq:
        return "repeat"
    if m.chain_seq == seq + 1:
        return "follows" if m.chain_prev == digest else "fork"
    return "gap"


# --- Private messages (proto/src/sealed.rs, chat-node/src/peer.rs) ---------


def sign_private(key, m):
    """Signs the PrivateMessage m with `key` (the sender's Ed25519 key)."""
    m.signature = key.sign(private_payload(m))
    return m


def seal_private(to_public_key, m):
    """A SealedPrivate for the host to pass on: m encoded and sealed with a
    libsodium sealed box to the recipient's Ed25519 key in X25519 form."""
    to = VerifyKey(bytes(to_public_key)).to_curve25519_public_key()
    sealed = SealedBox(to).encrypt(m.SerializeToString())
    if len(sealed) > MAX_SEALED_BYTES:
        raise ValueError(f"a sealed private message is at most {MAX_SEALED_BYTES} bytes;"
                         f" this one is {len(sealed)}")
    return chat_pb.SealedPrivate(to_node_id=m.to_node_id, sealed=sealed)


def open_sealed(seed, node_id, sealed):
    """The PrivateMessage in a SealedPrivate for the member whose Ed25519
    key has `seed` and whose node id is `node_id`. Still to be checked."""
    if sealed.to_node_id != node_id:
        raise ValueError("sealed for another node")
    if len(sealed.sealed) > MAX_SEALED_BYTES:
        raise ValueError("the sealed message is too large")
    me = SigningKey(seed).to_curve25519_private_key()
    try:
        inner = SealedBox(me).decrypt(bytes(sealed.sealed))
    except CryptoError:
        raise ValueError("the sealed message does not open with this key") from None
    try:
        return chat_pb.PrivateMessage.FromString(inner)
    except Exception as e:  # noqa: BLE001 (protobuf's DecodeError)
        raise ValueError(f"the sealed message holds no private message: {e}") from None


def check_private(relay, me, node_id, m, now):
    """A private message to `me` (node `node_id`), as chat-node checks it:
    addressed to this member, a valid text, the relay's certificate of its
    sender binds `from` to `from_node_id` and a key, that key signed it,
    and it was signed within 5 minutes of `now`. (Replays: the caller.)"""
    if (m.to, m.to_node_id) != (me, node_id):
        raise ValueError(f"addressed to {m.to!r} ({m.to_node_id}), not to this member")
    check_text(m.text)
    if not m.HasField("sender"):
        raise ValueError("no certificate of its sender")
    grant = relay.name(m.sender)
    if (grant.name, grant.node_id) != (m_from(m), m.from_node_id):
        raise ValueError(f"the certificate is of {grant.name!r}, not of the sender")
    if not verify(grant.public_key, private_payload(m), m.signature):
        raise ValueError("bad signature")
    if abs(now - m.sent_at_unix_ms) > MAX_CLOCK_SKEW_MS:
        raise ValueError("signed more than 5 minutes from this clock")
    return grant


# --- TLS (docs/trust.md, TLS) ------------------------------------------------


def tls_key_and_request(name):
    """A fresh ECDSA P-256 key for TLS only, as PEM, and a certificate
    signing request for it (DER) to send in Register; the relay ignores
    its subject."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
           .sign(key, hashes.SHA256()))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return pem, csr.public_bytes(serialization.Encoding.DER)


def der_to_pem(der):
    """A certificate in DER (as RegisterResponse carries them), as PEM."""
    return x509.load_der_x509_certificate(bytes(der)).public_bytes(serialization.Encoding.PEM)


def node_name(node_id):
    """The name a node's TLS certificate carries."""
    return node_id + NODE_NAME_SUFFIX


class Transport:
    """Plaintext or TLS (see the top of this file), to the relay and to nodes."""

    def __init__(self, relay, relay_ca, relay_tls_name, name):
        scheme, sep, rest = relay.partition("://")
        if not sep:
            scheme, rest = ("https" if relay_ca else "http"), relay
        if scheme not in ("http", "https"):
            sys.exit(f"relay address {relay!r}: give https://HOST:PORT, http://HOST:PORT"
                     " or HOST:PORT")
        self.tls, self.relay_address = scheme == "https", rest.rstrip("/")
        if self.tls and not relay_ca:
            sys.exit(f"the relay {relay} is TLS: give --relay-ca, the relay's DATA_DIR/ca.pem"
                     " (or http:// for a plaintext relay)")
        self.relay_ca = Path(relay_ca).read_bytes() if self.tls else None
        self.relay_tls_name = relay_tls_name
        self.node_credentials = None
        # A key for TLS only; the member's identity stays its Ed25519 key.
        self.tls_key, self.request = tls_key_and_request(name) if self.tls else (None, b"")

    def relay_channel(self):
        if not self.tls:
            return grpc.insecure_channel(self.relay_address)
        credentials = grpc.ssl_channel_credentials(root_certificates=self.relay_ca)
        options = []
        if self.relay_tls_name:
            options.append(("grpc.ssl_target_name_override", self.relay_tls_name))
        return grpc.secure_channel(self.relay_address, credentials, options=options)

    def registered(self, resp):
        """Keeps the certificate the relay issued for the TLS key, and its
        authority: the one trusted for nodes."""
        if not self.tls:
            return
        if not resp.tls_certificate or not resp.tls_authority:
            sys.exit("the relay issued no TLS certificate (does it serve plaintext?)")
        self.node_credentials = grpc.ssl_channel_credentials(
            root_certificates=der_to_pem(resp.tls_authority), private_key=self.tls_key,
            certificate_chain=der_to_pem(resp.tls_certificate))

    def node_channel(self, address, node_id):
        """A channel to the node `node_id` at `address`: over TLS it must show
        a certificate for NODE_ID.node.invalid from the relay's authority."""
        if not self.tls:
            return grpc.insecure_channel(address)
        options = [("grpc.ssl_target_name_override", node_name(node_id))]
        return grpc.secure_channel(address, self.node_credentials, options=options)
