//! The client side of onion requests: wrap a payload in one layer per hop, and open the
//! destination's reply (storage-server.md 2.8, clients.md 2.3–2.5).
//!
//! Owns: `build_onion` (fresh ephemeral X25519 key per layer, libsession's layout and compact
//! sorted-key JSON), `ClientReplyKey`, `decrypt_reply`. Used by the project's client and by
//! tests. Must not: choose paths, talk to the network, or log keys or payloads. Uses
//! x25519-dalek: the client builds a handful of layers per request, far from the node's hot path.

use super::crypto::{EncType, LayerCipher, PeelError, client_shared_secret};
use super::parse::frame;
use rand::rngs::OsRng;
use rand::{CryptoRng, RngCore};
use serde::Serialize;
use std::fmt;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// Most relay hops a path may have: nodes refuse `hop_no > 15` (storage-server.md 2.4).
pub const MAX_PATH_HOPS: usize = 15;

/// The public keys of one service node on the path (or of the destination node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HopKeys {
    /// Ed25519 key: how the previous hop names this node (`destination`).
    pub ed25519: [u8; 32],
    /// X25519 key (`pubkey_x25519`): what the layer is encrypted to.
    pub x25519: [u8; 32],
}

/// Where the onion request ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A service node that runs the payload as a client RPC (`{"method","params"}`).
    Node(HopKeys),
    /// An external server (SOGS, file server) reached through the last path hop; the payload
    /// is encrypted to the server's key without framing (v4 bencoded request, or v3 JSON).
    Server {
        /// Host name or address of the server.
        host: String,
        /// Path on the server, e.g. `/oxen/v4/lsrpc`.
        target: String,
        /// TCP port.
        port: u16,
        /// `https` or `http`.
        protocol: String,
        /// The server's X25519 public key.
        x25519: [u8; 32],
    },
}

/// A built onion request.
#[derive(Debug)]
pub struct Built {
    /// The body to `POST /onion_req/v2` on the guard (first path hop).
    pub guard_body: Vec<u8>,
    /// Opens the destination's reply.
    pub reply_key: ClientReplyKey,
}

/// Why an onion could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A server destination needs at least one node to proxy for it.
    #[error("a server destination needs at least one path hop")]
    NoPath,
    /// More hops than nodes accept.
    #[error("path has {hops} hops, at most {MAX_PATH_HOPS} are accepted")]
    TooManyHops {
        /// The number of hops asked for.
        hops: usize,
    },
    /// A node's X25519 key is a low-order point (index into the path; `path.len()` is the
    /// destination).
    #[error("X25519 key of hop {hop} is unusable")]
    BadKey {
        /// Which hop.
        hop: usize,
    },
    /// A layer would exceed the 4 GiB the size prefix can express.
    #[error("payload too large for an onion layer")]
    TooLarge,
}

/// Builds an onion request to `dest` through `path` (guard first), every layer with `enc_type`
/// and its own fresh ephemeral key.
pub fn build_onion(
    path: &[HopKeys],
    dest: &Destination,
    payload: &[u8],
    enc_type: EncType,
) -> Result<Built, BuildError> {
    build_onion_with_rng(path, dest, payload, enc_type, &mut OsRng)
}

/// As [`build_onion`], drawing keys and nonces from `rng` (tests and benches seed it).
pub fn build_onion_with_rng<R: RngCore + CryptoRng>(
    path: &[HopKeys],
    dest: &Destination,
    payload: &[u8],
    enc_type: EncType,
    rng: &mut R,
) -> Result<Built, BuildError> {
    if path.len() > MAX_PATH_HOPS {
        return Err(BuildError::TooManyHops { hops: path.len() });
    }
    let et = enc_type.as_str();

    // Innermost layer, for the destination itself.
    let (dest_x25519, dest_plain) = match dest {
        Destination::Node(keys) => {
            let framed = frame(payload, br#"{"headers":""}"#).ok_or(BuildError::TooLarge)?;
            (keys.x25519, Zeroizing::new(framed))
        }
        Destination::Server { x25519, .. } => {
            if path.is_empty() {
                return Err(BuildError::NoPath);
            }
            (*x25519, Zeroizing::new(payload.to_vec()))
        }
    };
    let (mut blob, mut eph_pub, reply_key) = seal_layer(&dest_x25519, enc_type, &dest_plain, rng)
        .map_err(|_| BuildError::BadKey { hop: path.len() })?;
    drop(dest_plain);

    // What the hop before the destination reads: where to send `blob`, and its key.
    let eph_hex = hex::encode(eph_pub);
    let mut route_json = match dest {
        Destination::Node(keys) => to_json(&RelayJson {
            destination: &hex::encode(keys.ed25519),
            enc_type: et,
            ephemeral_key: &eph_hex,
        }),
        Destination::Server {
            host,
            target,
            port,
            protocol,
            ..
        } => to_json(&ServerJson {
            enc_type: et,
            ephemeral_key: &eph_hex,
            host,
            method: "POST",
            port: *port,
            protocol,
            target,
        }),
    };

    // Wrap outwards: the exit hop first, the guard last.
    for (i, hop) in path.iter().enumerate().rev() {
        let plain = Zeroizing::new(frame(&blob, &route_json).ok_or(BuildError::TooLarge)?);
        let (sealed, pub_key, _) = seal_layer(&hop.x25519, enc_type, &plain, rng)
            .map_err(|_| BuildError::BadKey { hop: i })?;
        blob = sealed;
        eph_pub = pub_key;
        route_json = to_json(&RelayJson {
            destination: &hex::encode(hop.ed25519),
            enc_type: et,
            ephemeral_key: &hex::encode(eph_pub),
        });
    }

    // The guard learns its layer's key from the outer JSON (its own `destination` is dropped).
    let entry_json = to_json(&EntryJson {
        enc_type: et,
        ephemeral_key: &hex::encode(eph_pub),
    });
    let guard_body = frame(&blob, &entry_json).ok_or(BuildError::TooLarge)?;
    Ok(Built {
        guard_body,
        reply_key,
    })
}

/// Encrypts `plaintext` to `server_pub` with a fresh ephemeral key: (ciphertext, ephemeral
/// public key, the key that opens the reply to this layer).
fn seal_layer<R: RngCore + CryptoRng>(
    server_pub: &[u8; 32],
    enc_type: EncType,
    plaintext: &[u8],
    rng: &mut R,
) -> Result<(Vec<u8>, [u8; 32], ClientReplyKey), PeelError> {
    let eph = StaticSecret::random_from_rng(&mut *rng);
    // One fixed-base multiplication for the public key, one ladder for the shared secret.
    let eph_pub = PublicKey::from(&eph).to_bytes();
    let shared = eph.diffie_hellman(&PublicKey::from(*server_pub));
    if !shared.was_contributory() {
        return Err(PeelError::LowOrderKey);
    }
    let key = ClientReplyKey {
        cipher: LayerCipher::new(enc_type, shared.as_bytes(), &eph_pub, server_pub)?,
    };
    let sealed = key.cipher.encrypt(plaintext, rng)?;
    Ok((sealed, eph_pub, key))
}

/// JSON keys in alphabetical order: libsession's `nlohmann::json::dump()` sorts keys, and
/// serde writes struct fields in declaration order.
#[derive(Serialize)]
struct RelayJson<'a> {
    destination: &'a str,
    enc_type: &'a str,
    ephemeral_key: &'a str,
}

#[derive(Serialize)]
struct EntryJson<'a> {
    enc_type: &'a str,
    ephemeral_key: &'a str,
}

#[derive(Serialize)]
struct ServerJson<'a> {
    enc_type: &'a str,
    ephemeral_key: &'a str,
    host: &'a str,
    method: &'a str,
    port: u16,
    protocol: &'a str,
    target: &'a str,
}

/// Serialises one of the route structs above; they hold only strings and integers, which
/// serde_json always encodes, so the empty fallback is unreachable (and would only make the
/// hop answer "Invalid json", never panic).
fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// The client's key for the destination's reply: the innermost layer's key, which the
/// destination reuses (storage-server.md 2.5).
pub struct ClientReplyKey {
    cipher: LayerCipher,
}

impl fmt::Debug for ClientReplyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientReplyKey")
            .field("enc_type", &self.enc_type())
            .finish_non_exhaustive()
    }
}

impl ClientReplyKey {
    /// Derives the key from the client's ephemeral secret of the innermost layer and the
    /// destination's X25519 public key (libsession `HopEncryption{a, A, server=false}`).
    pub fn new(
        client_secret: &[u8; 32],
        server_pub: &[u8; 32],
        enc_type: EncType,
    ) -> Result<Self, PeelError> {
        let client_pub = PublicKey::from(&StaticSecret::from(*client_secret)).to_bytes();
        let shared = client_shared_secret(client_secret, server_pub)?;
        Ok(Self {
            cipher: LayerCipher::new(enc_type, &shared, &client_pub, server_pub)?,
        })
    }

    /// The cipher of the reply.
    pub fn enc_type(&self) -> EncType {
        self.cipher.enc_type()
    }

    /// Opens the reply bytes (after base64-decoding them, when the reply was base64).
    pub fn decrypt_reply(&self, reply: &[u8]) -> Result<Vec<u8>, PeelError> {
        self.cipher.decrypt(reply)
    }
}

/// One-shot form of [`ClientReplyKey::decrypt_reply`].
pub fn decrypt_reply(
    client_secret: &[u8; 32],
    server_pub: &[u8; 32],
    enc_type: EncType,
    reply: &[u8],
) -> Result<Vec<u8>, PeelError> {
    ClientReplyKey::new(client_secret, server_pub, enc_type)?.decrypt_reply(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onion::parse::parse_combined;
    use crate::onion::peel::NodeOnionKey;
    use crate::onion::route::{Layer, route};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn node(rng: &mut StdRng) -> (NodeOnionKey, HopKeys) {
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let mut ed25519 = [0u8; 32];
        rng.fill_bytes(&mut ed25519);
        let key = NodeOnionKey::from_secret(&secret).expect("any 32 bytes are a secret");
        let x25519 = *key.public_key();
        (key, HopKeys { ed25519, x25519 })
    }

    /// clients.md 2.5 self-consistency figures: xchacha20, payload `{"method":"info",
    /// "params":{}}` through 3 hops to a node: layer plaintexts of 743, 511, 279 and 47 bytes.
    #[test]
    fn libsession_layer_sizes_and_json_layout() {
        let mut rng = StdRng::seed_from_u64(42);
        let nodes: Vec<_> = (0..4).map(|_| node(&mut rng)).collect();
        let path: Vec<HopKeys> = nodes[..3].iter().map(|n| n.1).collect();
        let payload = br#"{"method":"info","params":{}}"#;
        let built = build_onion_with_rng(
            &path,
            &Destination::Node(nodes[3].1),
            payload,
            EncType::XChaCha20,
            &mut rng,
        )
        .expect("builds");

        let c = parse_combined(&built.guard_body).expect("entry body parses");
        assert_eq!(c.enc_type, EncType::XChaCha20);
        let json = &built.guard_body[4 + c.ciphertext.len()..];
        let want = format!(
            r#"{{"enc_type":"xchacha20","ephemeral_key":"{}"}}"#,
            hex::encode(c.ephemeral_key)
        );
        assert_eq!(json, want.as_bytes());

        let (mut eph, mut et, mut ct) = (c.ephemeral_key, c.enc_type, c.ciphertext.to_vec());
        for (i, size) in [743usize, 511, 279].into_iter().enumerate() {
            let (plain, _) = nodes[i].0.peel(&eph, et, &ct).expect("hop peels");
            assert_eq!(plain.len(), size, "hop {i}");
            match route(&plain).expect("routes") {
                Layer::ToNode {
                    destination,
                    ephemeral_key,
                    enc_type,
                    inner,
                } => {
                    assert_eq!(destination, nodes[i + 1].1.ed25519);
                    let relay = format!(
                        r#"{{"destination":"{}","enc_type":"xchacha20","ephemeral_key":"{}"}}"#,
                        hex::encode(destination),
                        hex::encode(ephemeral_key)
                    );
                    assert!(plain.ends_with(relay.as_bytes()));
                    (eph, et, ct) = (ephemeral_key, enc_type, inner.to_vec());
                }
                other => panic!("hop {i}: {other:?}"),
            }
        }
        let (plain, reply_key) = nodes[3].0.peel(&eph, et, &ct).expect("destination peels");
        assert_eq!(plain.len(), 47);
        assert_eq!(
            route(&plain),
            Ok(Layer::Final {
                body: &payload[..],
                json: false,
                base64: true
            })
        );
        let reply = reply_key.encrypt(br#"{"status":200,"body":"ok"}"#);
        assert_eq!(
            built.reply_key.decrypt_reply(&reply).expect("client opens"),
            br#"{"status":200,"body":"ok"}"#
        );
    }

    #[test]
    fn server_destination_round_trip() {
        let mut rng = StdRng::seed_from_u64(43);
        let (guard, guard_keys) = node(&mut rng);
        let (server, server_keys) = node(&mut rng);
        let dest = Destination::Server {
            host: "sogs.example".into(),
            target: "/oxen/v4/lsrpc".into(),
            port: 443,
            protocol: "https".into(),
            x25519: server_keys.x25519,
        };
        let payload = b"l21:{\"method\":\"GET\"}e";
        let built = build_onion_with_rng(&[guard_keys], &dest, payload, EncType::AesGcm, &mut rng)
            .expect("builds");
        let c = parse_combined(&built.guard_body).expect("entry parses");
        let (plain, _) = guard
            .peel(&c.ephemeral_key, c.enc_type, c.ciphertext)
            .expect("peels");
        let Ok(Layer::ToServer {
            host,
            target,
            port,
            protocol,
            payload: posted,
        }) = route(&plain)
        else {
            panic!("exit hop must proxy");
        };
        assert_eq!(
            (host.as_str(), target.as_str(), port, protocol.as_str()),
            ("sogs.example", "/oxen/v4/lsrpc", 443, "https")
        );
        // The server receives the whole layer and finds its own key in the JSON.
        let at_server = parse_combined(posted).expect("server parses the posted layer");
        let (got, reply_key) = server
            .peel(
                &at_server.ephemeral_key,
                at_server.enc_type,
                at_server.ciphertext,
            )
            .expect("server decrypts");
        assert_eq!(got, payload);
        let reply = reply_key.encrypt(b"l13:{\"code\":200}e");
        assert_eq!(
            built.reply_key.decrypt_reply(&reply).expect("opens"),
            b"l13:{\"code\":200}e"
        );
    }

    #[test]
    fn zero_hops_to_a_node_and_refusals() {
        let mut rng = StdRng::seed_from_u64(44);
        let (dest, dest_keys) = node(&mut rng);
        let built = build_onion(&[], &Destination::Node(dest_keys), b"{}", EncType::AesCbc)
            .expect("builds");
        let c = parse_combined(&built.guard_body).expect("parses");
        let (plain, _) = dest
            .peel(&c.ephemeral_key, c.enc_type, c.ciphertext)
            .expect("peels");
        assert!(matches!(
            route(&plain),
            Ok(Layer::Final { body: b"{}", .. })
        ));

        let server = Destination::Server {
            host: "h".into(),
            target: "/loki/v3/lsrpc".into(),
            port: 80,
            protocol: "http".into(),
            x25519: dest_keys.x25519,
        };
        assert_eq!(
            build_onion(&[], &server, b"", EncType::AesGcm).err(),
            Some(BuildError::NoPath)
        );
        let long = vec![dest_keys; MAX_PATH_HOPS + 1];
        assert_eq!(
            build_onion(&long, &Destination::Node(dest_keys), b"", EncType::AesGcm).err(),
            Some(BuildError::TooManyHops { hops: 16 })
        );
        let bad = HopKeys {
            ed25519: [1; 32],
            x25519: [0; 32],
        };
        assert_eq!(
            build_onion(
                &[dest_keys, bad],
                &Destination::Node(dest_keys),
                b"",
                EncType::AesGcm
            )
            .err(),
            Some(BuildError::BadKey { hop: 1 })
        );
        assert_eq!(
            build_onion(&[dest_keys], &Destination::Node(bad), b"", EncType::AesGcm).err(),
            Some(BuildError::BadKey { hop: 1 })
        );
    }

    #[test]
    fn decrypt_reply_one_shot_matches_key() {
        let mut rng = StdRng::seed_from_u64(45);
        let (server, keys) = node(&mut rng);
        let client_secret = [7u8; 32];
        let client_pub = PublicKey::from(&StaticSecret::from(client_secret)).to_bytes();
        for enc_type in [EncType::AesGcm, EncType::XChaCha20, EncType::AesCbc] {
            let key = ClientReplyKey::new(&client_secret, &keys.x25519, enc_type).expect("key");
            let ct = key.cipher.encrypt(b"request", &mut rng).expect("seal");
            let (pt, reply_key) = server.peel(&client_pub, enc_type, &ct).expect("peels");
            assert_eq!(pt, b"request");
            let reply = reply_key.encrypt(b"reply");
            assert_eq!(
                decrypt_reply(&client_secret, &keys.x25519, enc_type, &reply).expect("opens"),
                b"reply"
            );
            assert_eq!(
                format!("{key:?}"),
                format!("ClientReplyKey {{ enc_type: {enc_type:?}, .. }}")
            );
        }
    }
}
