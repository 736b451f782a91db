//! Shipping tasks to executors that run the byte-identical binary.
//!
//! Code is never serialized. A type-erased value (a lineage node, a shuffle dependency, a
//! job) is encoded as: a tag for the trait it is erased to, the address of a
//! monomorphized *decoder* function for its concrete type minus the address of a fixed
//! [`anchor`] (PIE/ASLR move the whole image together, so offsets survive), and the
//! concrete value's own bytes. Decoding jumps to `anchor + offset`, which is only sound
//! between identical binaries, so:
//!
//! - both sides compute a [`exe_id`] (hash of the running executable); it is checked at
//!   handshake and in every [`Envelope`];
//! - an envelope is authenticated with HMAC-SHA256 under a per-application secret, so no
//!   other process can make an executor jump;
//! - code offsets are only decoded inside [`open`] after both checks ([`TrustedScope`]).
//!
//! Lineage nodes are immutable, so each [`SerArc`] encodes its value once and reuses the
//! bytes for every task (and nested encoding does not blow up with lineage depth).

use hmac::{Hmac, Mac};
use serde::de::{self, DeserializeOwned, DeserializeSeed, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::any::TypeId;
use std::cell::Cell;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

/// Why shipping failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShipError {
    /// The envelope was made by a different build of the program.
    #[error(
        "binary mismatch: the task was encoded by executable {sender:016x} but this process is {ours:016x}; \
         driver and executors must run the byte-identical binary (redeploy the executor binary)"
    )]
    BinaryMismatch {
        /// Identity of the sender's executable.
        sender: u64,
        /// Identity of ours.
        ours: u64,
    },
    /// The envelope's MAC does not verify: forged, corrupted or from another application.
    #[error(
        "refusing task envelope: authentication failed (forged, corrupted, or from another application)"
    )]
    BadMac,
    /// Bytes that do not decode.
    #[error("malformed task envelope: {0}")]
    Malformed(String),
    /// Encoding failed.
    #[error("encoding failed: {0}")]
    Encode(String),
}

/// The codec for everything shipped (bincode 1: compact, fast, keeps custom errors).
pub mod codec {
    use super::ShipError;
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// Encode a value.
    pub fn to_vec<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, ShipError> {
        bincode::serialize(v).map_err(|e| ShipError::Encode(e.to_string()))
    }

    /// Decode a value.
    pub fn from_slice<T: DeserializeOwned>(b: &[u8]) -> Result<T, ShipError> {
        bincode::deserialize(b).map_err(|e| ShipError::Malformed(e.to_string()))
    }
}

// ───────────────────────── binary identity ─────────────────────────

/// Identity of the running executable: a hash of its bytes (`/proc/self/exe` is the image
/// that was exec'd, even if the file on disk has since been rebuilt).
pub fn exe_id() -> u64 {
    let mut id = [0u8; 8];
    id.copy_from_slice(&exe_sha256()[..8]);
    u64::from_le_bytes(id)
}

/// SHA-256 of the running executable's bytes, computed once per process (the driver
/// checks executors' downloads against it; [`exe_id`] is its first 8 bytes).
pub fn exe_sha256() -> [u8; 32] {
    static DIGEST: OnceLock<[u8; 32]> = OnceLock::new();
    *DIGEST.get_or_init(|| {
        let bytes = std::fs::read("/proc/self/exe")
            .or_else(|_| std::env::current_exe().and_then(std::fs::read))
            .unwrap_or_default();
        Sha256::digest(&bytes).into()
    })
}

// ───────────────────────── code offsets ─────────────────────────

#[inline(never)]
fn anchor() {}

fn anchor_addr() -> usize {
    anchor as fn() as usize
}

fn code_offset(addr: usize) -> i64 {
    addr.wrapping_sub(anchor_addr()) as i64
}

thread_local! {
    /// Set only while decoding an envelope whose identity and MAC were verified.
    static TRUSTED: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as decoding a verified envelope, for its lifetime.
pub struct TrustedScope(bool);

impl TrustedScope {
    fn enter() -> Self {
        TrustedScope(TRUSTED.replace(true))
    }
}

impl Drop for TrustedScope {
    fn drop(&mut self) {
        TRUSTED.set(self.0);
    }
}

/// Fails unless called while decoding a verified envelope.
pub fn check_trusted() -> Result<(), String> {
    if TRUSTED.get() {
        Ok(())
    } else {
        Err("code references can only be decoded inside a verified task envelope".into())
    }
}

fn code_addr(off: i64) -> Result<usize, String> {
    check_trusted()?;
    let a = anchor_addr().wrapping_add(off as usize);
    if a == 0 {
        return Err("null code address".into());
    }
    Ok(a)
}

/// Tag naming a function-pointer type; `TypeId` is comparable within one binary, which is
/// exactly the situation.
fn type_tag<T: ?Sized + 'static>() -> u64 {
    let mut h = DefaultHasher::new();
    TypeId::of::<T>().hash(&mut h);
    h.finish()
}

// ─────────── SerArc<dyn Trait>: serializable trait objects on stable ───────────

/// Encode the concrete value behind a trait object (blanket-implemented for `Serialize`
/// types, so it lands in every vtable).
pub trait EncodeSelf {
    /// The value's own bytes.
    fn encode_self(&self) -> Result<Vec<u8>, String>;
}

impl<C: Serialize> EncodeSelf for C {
    fn encode_self(&self) -> Result<Vec<u8>, String> {
        bincode::serialize(self).map_err(|e| e.to_string())
    }
}

/// How a concrete `C` becomes an `Arc<D>` (a stable stand-in for `Unsize`).
pub trait Upcast<D: ?Sized> {
    /// Erase the type.
    fn upcast(self: Arc<Self>) -> Arc<D>;
}

type DeserFn<D> = fn(&[u8]) -> Result<Arc<D>, String>;

fn deser_impl<C, D: ?Sized>(bytes: &[u8]) -> Result<Arc<D>, String>
where
    C: DeserializeOwned + Upcast<D>,
{
    let c: C = bincode::deserialize(bytes).map_err(|e| e.to_string())?;
    Ok(Arc::new(c).upcast())
}

/// A shared, type-erased, serializable value. Derefs to `D`.
pub struct SerArc<D: ?Sized + 'static> {
    inner: Arc<D>,
    deser: DeserFn<D>,
    blob: Arc<OnceLock<Vec<u8>>>,
}

impl<D: ?Sized> Clone for SerArc<D> {
    fn clone(&self) -> Self {
        SerArc {
            inner: self.inner.clone(),
            deser: self.deser,
            blob: self.blob.clone(),
        }
    }
}

impl<D: ?Sized> Deref for SerArc<D> {
    type Target = D;
    fn deref(&self) -> &D {
        &self.inner
    }
}

impl<D: ?Sized + 'static> SerArc<D> {
    /// Erase `c` to `D`, remembering how to decode it.
    pub fn new<C: Upcast<D> + Serialize + DeserializeOwned + 'static>(c: C) -> Self {
        SerArc {
            inner: Arc::new(c).upcast(),
            deser: deser_impl::<C, D>,
            blob: Default::default(),
        }
    }

    /// The shared pointer.
    pub fn arc(&self) -> &Arc<D> {
        &self.inner
    }
}

struct Bytes<'a>(&'a [u8]);
impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<D: ?Sized + EncodeSelf + 'static> Serialize for SerArc<D> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let blob = match self.blob.get() {
            Some(b) => b,
            None => {
                let b = self
                    .inner
                    .encode_self()
                    .map_err(serde::ser::Error::custom)?;
                self.blob.get_or_init(|| b)
            }
        };
        let mut t = s.serialize_tuple(3)?;
        t.serialize_element(&type_tag::<DeserFn<D>>())?;
        t.serialize_element(&code_offset(self.deser as usize))?;
        t.serialize_element(&Bytes(blob))?;
        t.end()
    }
}

impl<'de, D: ?Sized + 'static> Deserialize<'de> for SerArc<D> {
    fn deserialize<De: Deserializer<'de>>(d: De) -> Result<Self, De::Error> {
        struct V<D: ?Sized>(PhantomData<fn() -> Arc<D>>);
        struct Seed<D: ?Sized + 'static>(DeserFn<D>);
        impl<'de, D: ?Sized + 'static> DeserializeSeed<'de> for Seed<D> {
            type Value = Arc<D>;
            fn deserialize<De: Deserializer<'de>>(self, d: De) -> Result<Arc<D>, De::Error> {
                d.deserialize_bytes(self)
            }
        }
        impl<'de, D: ?Sized + 'static> Visitor<'de> for Seed<D> {
            type Value = Arc<D>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an encoded trait object payload")
            }
            fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Arc<D>, E> {
                (self.0)(b).map_err(E::custom)
            }
            fn visit_byte_buf<E: de::Error>(self, b: Vec<u8>) -> Result<Arc<D>, E> {
                (self.0)(&b).map_err(E::custom)
            }
        }
        impl<'de, D: ?Sized + 'static> Visitor<'de> for V<D> {
            type Value = SerArc<D>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a serialized trait object (tag, code offset, payload)")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SerArc<D>, A::Error> {
                let tag: u64 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let off: i64 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                if tag != type_tag::<DeserFn<D>>() {
                    return Err(de::Error::custom(format!(
                        "trait-object type mismatch: expected {}",
                        std::any::type_name::<D>()
                    )));
                }
                let addr = code_addr(off).map_err(de::Error::custom)?;
                // SAFETY: the binary is identical (checked before the trusted scope was
                // entered) and the tag proves the sender cast `deser_impl::<C, D>` to
                // exactly `DeserFn<D>`, so the same offset is the same function here.
                let deser: DeserFn<D> = unsafe { std::mem::transmute::<usize, DeserFn<D>>(addr) };
                let inner = seq
                    .next_element_seed(Seed(deser))?
                    .ok_or_else(|| de::Error::invalid_length(2, &self))?;
                Ok(SerArc {
                    inner,
                    deser,
                    blob: Default::default(),
                })
            }
        }
        d.deserialize_tuple(3, V::<D>(PhantomData))
    }
}

// ───────────────────────── envelopes ─────────────────────────

/// A per-application secret shared by the driver and its executors.
#[derive(Clone)]
pub struct Secret([u8; 32]);

impl Secret {
    /// A fresh random secret.
    pub fn generate() -> Result<Self, ShipError> {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b)
            .map_err(|e| ShipError::Encode(format!("no randomness for the secret: {e}")))?;
        Ok(Secret(b))
    }

    /// Hex form, to hand to executor processes.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parse the hex form.
    pub fn from_hex(s: &str) -> Result<Self, ShipError> {
        let bad = || ShipError::Malformed("secret must be 64 hex digits".into());
        if s.len() != 64 {
            return Err(bad());
        }
        let mut b = [0u8; 32];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let hex = std::str::from_utf8(chunk).map_err(|_| bad())?;
            b[i] = u8::from_str_radix(hex, 16).map_err(|_| bad())?;
        }
        Ok(Secret(b))
    }

    fn mac(&self, exe: u64, payload: &[u8]) -> Hmac<Sha256> {
        // A 32-byte key is always a valid HMAC key.
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        m.update(&exe.to_le_bytes());
        m.update(payload);
        m
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// What travels: the sender's binary identity, a MAC, and the encoded value.
#[derive(Serialize, Deserialize)]
pub struct Envelope {
    exe: u64,
    mac: [u8; 32],
    payload: Vec<u8>,
}

/// Encode `value` into authenticated envelope bytes.
pub fn seal<T: Serialize>(value: &T, secret: &Secret) -> Result<Vec<u8>, ShipError> {
    let payload = codec::to_vec(value)?;
    let exe = exe_id();
    let mac: [u8; 32] = secret.mac(exe, &payload).finalize().into_bytes().into();
    codec::to_vec(&Envelope { exe, mac, payload })
}

/// Verify and decode envelope bytes made by [`seal`] in an identical binary.
pub fn open<T: DeserializeOwned>(bytes: &[u8], secret: &Secret) -> Result<T, ShipError> {
    let env: Envelope = codec::from_slice(bytes)?;
    if env.exe != exe_id() {
        return Err(ShipError::BinaryMismatch {
            sender: env.exe,
            ours: exe_id(),
        });
    }
    secret
        .mac(env.exe, &env.payload)
        .verify_slice(&env.mac)
        .map_err(|_| ShipError::BadMac)?;
    let _trusted = TrustedScope::enter();
    codec::from_slice(&env.payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    trait Shape: EncodeSelf + Send + Sync {
        fn area(&self) -> f64;
    }
    #[derive(Serialize, Deserialize)]
    struct Square(f64);
    impl Shape for Square {
        fn area(&self) -> f64 {
            self.0 * self.0
        }
    }
    impl<C: Shape + 'static> Upcast<dyn Shape> for C {
        fn upcast(self: Arc<Self>) -> Arc<dyn Shape> {
            self
        }
    }

    #[derive(Serialize, Deserialize)]
    struct Job {
        name: String,
        shapes: Vec<SerArc<dyn Shape>>,
    }

    fn job() -> Job {
        Job {
            name: "j".into(),
            shapes: vec![SerArc::new(Square(2.0)), SerArc::new(Square(3.0))],
        }
    }

    #[test]
    fn sealed_values_round_trip() {
        let secret = Secret::generate().expect("random");
        let bytes = seal(&job(), &secret).expect("seal");
        let back: Job = open(&bytes, &secret).expect("open");
        assert_eq!(back.name, "j");
        assert_eq!(
            back.shapes.iter().map(|s| s.area()).collect::<Vec<_>>(),
            vec![4.0, 9.0]
        );
    }

    #[test]
    fn code_references_outside_an_envelope_are_refused() {
        let bytes = codec::to_vec(&job()).expect("encode");
        let e = codec::from_slice::<Job>(&bytes).err().expect("refused");
        assert!(e.to_string().contains("verified task envelope"), "{e}");
    }

    #[test]
    fn another_binary_is_refused_with_a_redeploy_message() {
        let secret = Secret::generate().expect("random");
        let mut env: Envelope =
            codec::from_slice(&seal(&job(), &secret).expect("seal")).expect("envelope");
        env.exe ^= 1;
        let e = open::<Job>(&codec::to_vec(&env).expect("encode"), &secret)
            .err()
            .expect("refused");
        assert!(matches!(e, ShipError::BinaryMismatch { .. }));
        assert!(e.to_string().contains("redeploy"), "{e}");
    }

    #[test]
    fn forged_or_corrupted_envelopes_are_refused() {
        let secret = Secret::generate().expect("random");
        let bytes = seal(&job(), &secret).expect("seal");
        let other = Secret::generate().expect("random");
        assert_eq!(open::<Job>(&bytes, &other).err(), Some(ShipError::BadMac));
        let mut corrupt = bytes.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0x40;
        assert_eq!(
            open::<Job>(&corrupt, &secret).err(),
            Some(ShipError::BadMac)
        );
        assert!(matches!(
            open::<Job>(&bytes[..10], &secret),
            Err(ShipError::Malformed(_))
        ));
    }

    #[test]
    fn each_value_is_encoded_once() {
        let shared = SerArc::<dyn Shape>::new(Square(1.5));
        let a = codec::to_vec(&shared).expect("first");
        assert!(shared.blob.get().is_some(), "bytes cached");
        let b = codec::to_vec(&shared.clone()).expect("second");
        assert_eq!(a, b);
    }

    #[test]
    fn secrets_round_trip_as_hex() {
        let s = Secret::generate().expect("random");
        assert_eq!(Secret::from_hex(&s.to_hex()).expect("parse").0, s.0);
        assert!(Secret::from_hex("zz").is_err());
    }
}
