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
//! Lineage nodes are immutable, so each [`SerArc`] encodes its own value once and reuses
//! the bytes for every task. A lineage travels as a flat table of nodes, children first,
//! each referring to its children by id: its size is linear in the number of nodes, and
//! encoding, decoding and dropping it are loops, not recursion, however deep it is.

use hmac::{Hmac, Mac};
use serde::de::{self, DeserializeOwned};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::any::{Any, TypeId};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::mem::ManuallyDrop;
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

    /// Encode a value, appending to `out` (a buffer the caller reuses).
    pub fn to_writer<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) -> Result<(), ShipError> {
        bincode::serialize_into(out, v).map_err(|e| ShipError::Encode(e.to_string()))
    }

    /// Decode a value.
    pub fn from_slice<T: DeserializeOwned>(b: &[u8]) -> Result<T, ShipError> {
        bincode::deserialize(b).map_err(|e| ShipError::Malformed(e.to_string()))
    }

    /// Decode an encoded `Vec<R>`, appending its elements to `out`: a reader that knows
    /// the total sizes `out` once instead of collecting a vector per piece and copying.
    pub fn extend_from_slice<R: DeserializeOwned>(
        out: &mut Vec<R>,
        b: &[u8],
    ) -> Result<(), ShipError> {
        use bincode::Options as _;
        bincode::DefaultOptions::new()
            .with_fixint_encoding()
            .allow_trailing_bytes()
            .deserialize_seed(Extend(out), b)
            .map_err(|e| ShipError::Malformed(e.to_string()))
    }

    /// Deserializes a sequence by pushing onto a vector.
    struct Extend<'a, R>(&'a mut Vec<R>);

    impl<'de, R: DeserializeOwned> serde::de::DeserializeSeed<'de> for Extend<'_, R> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }

    impl<'de, R: DeserializeOwned> serde::de::Visitor<'de> for Extend<'_, R> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a sequence")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            // The length is only a hint from the input: capped, as serde's own Vec does.
            self.0.reserve(seq.size_hint().unwrap_or(0).min(1 << 16));
            while let Some(r) = seq.next_element()? {
                self.0.push(r);
            }
            Ok(())
        }
    }

    /// Decode a value that borrows from `b`.
    pub(crate) fn from_slice_borrowed<'a, T: serde::Deserialize<'a>>(
        b: &'a [u8],
    ) -> Result<T, ShipError> {
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
        // Streamed: reading a 100+ MB debug binary whole would make it every process's
        // peak memory.
        let mut hasher = Sha256::new();
        let file = std::fs::File::open("/proc/self/exe")
            .or_else(|_| std::env::current_exe().and_then(std::fs::File::open));
        if let Ok(mut file) = file {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match std::io::Read::read(&mut file, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => hasher.update(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        hasher.finalize().into()
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
    pub(crate) fn enter() -> Self {
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
//
// A lineage is a graph of `SerArc`s. It travels as a flat table: one entry per node (its
// id, the code offset of its decoder, its own bytes), children before parents, and inside
// a node's bytes each child is only its id. Encoding walks the graph with an explicit
// stack and decoding is one loop over the table, so neither the bytes nor any thread's
// stack grows faster than the number of nodes, however deep the lineage. Dropping is
// iterative too (see `defer_drop`).

/// Encode the concrete value behind a trait object (blanket-implemented for `Serialize`
/// types, so it lands in every vtable).
pub trait EncodeSelf {
    /// The value's own bytes.
    fn encode_self(&self) -> Result<Vec<u8>, String>;
}

impl<C: Serialize> EncodeSelf for C {
    fn encode_self(&self) -> Result<Vec<u8>, String> {
        bincode::Options::serialize(node_codec(), self).map_err(|e| e.to_string())
    }
}

/// The encoding of a node's own bytes: bincode with variable-length integers, since a
/// lineage node is mostly small numbers (ids, counts, lengths) and a deep lineage's
/// envelope is copied a few times on each side.
fn node_codec() -> impl bincode::Options {
    use bincode::Options as _;
    bincode::DefaultOptions::new().with_varint_encoding()
}

/// How a concrete `C` becomes an `Arc<D>` (a stable stand-in for `Unsize`).
pub trait Upcast<D: ?Sized> {
    /// Erase the type.
    fn upcast(self: Arc<Self>) -> Arc<D>;
}

/// Decodes one table entry into a `SerArc<D>` boxed as `Any`: one signature for every
/// node type, so a table of mixed nodes decodes in one loop.
type DecodeFn = fn(&[u8]) -> Result<Box<dyn Any>, String>;

fn decode_impl<C, D: ?Sized + 'static>(bytes: &[u8]) -> Result<Box<dyn Any>, String>
where
    C: DeserializeOwned + Upcast<D> + 'static,
{
    let c: C = bincode::Options::deserialize(node_codec(), bytes).map_err(|e| e.to_string())?;
    Ok(Box::new(SerArc::<D> {
        inner: ManuallyDrop::new(Arc::new(c).upcast()),
        decode: decode_impl::<C, D>,
        blob: Default::default(),
        volatile: false,
    }))
}

/// A node's own encoding, made once (nodes are immutable): its bytes, with each child
/// `SerArc` written as its id, and those children, to walk on.
struct Encoded {
    bytes: Vec<u8>,
    children: Vec<Box<dyn GraphNode>>,
}

/// A `SerArc` seen without its type, for walking and encoding a graph.
trait GraphNode: Send + Sync {
    /// Unique among the live nodes of this process (the address of the shared value).
    fn node_id(&self) -> u64;
    fn decoder(&self) -> DecodeFn;
    fn encoded(&self) -> Result<Arc<Encoded>, String>;
    fn clone_node(&self) -> Box<dyn GraphNode>;
}

thread_local! {
    /// While a graph is being encoded: the `SerArc`s met in the value being serialized.
    static COLLECT: Cell<Option<Vec<Box<dyn GraphNode>>>> = const { Cell::new(None) };
    /// While a graph is being decoded: the nodes decoded so far, by id.
    static DECODED: RefCell<Option<HashMap<u64, Box<dyn Any>>>> = const { RefCell::new(None) };
    /// Values whose drop was deferred by a drop already running on this thread.
    static DROPS: RefCell<Option<Vec<Box<dyn Any>>>> = const { RefCell::new(None) };
}

/// A shared, type-erased, serializable value. Derefs to `D`.
pub struct SerArc<D: ?Sized + 'static> {
    inner: ManuallyDrop<Arc<D>>,
    decode: DecodeFn,
    blob: ManuallyDrop<Arc<OnceLock<Arc<Encoded>>>>,
    /// Encoded afresh every time: the value's encoding can change (a checkpoint that
    /// has cut its lineage).
    volatile: bool,
}

impl<D: ?Sized> Clone for SerArc<D> {
    fn clone(&self) -> Self {
        SerArc {
            inner: self.inner.clone(),
            decode: self.decode,
            blob: self.blob.clone(),
            volatile: self.volatile,
        }
    }
}

impl<D: ?Sized> Deref for SerArc<D> {
    type Target = D;
    fn deref(&self) -> &D {
        &self.inner
    }
}

impl<D: ?Sized + 'static> Drop for SerArc<D> {
    fn drop(&mut self) {
        // SAFETY: both fields are taken exactly once, here, and never used afterwards.
        let (inner, blob) = unsafe {
            (
                ManuallyDrop::take(&mut self.inner),
                ManuallyDrop::take(&mut self.blob),
            )
        };
        if Arc::strong_count(&inner) > 1 && Arc::strong_count(&blob) > 1 {
            // Not the last owner: decrements, nothing recursive.
            drop((inner, blob));
        } else {
            defer_drop(Box::new((inner, blob)));
        }
    }
}

/// Drop `value` without recursing through a lineage: a node's parents dropped while it is
/// being dropped are queued and dropped by the outermost call, one after the other.
fn defer_drop(value: Box<dyn Any>) {
    let mut value = Some(value);
    let drainer = DROPS
        .try_with(|cell| {
            let mut queue = cell.borrow_mut();
            match queue.as_mut() {
                Some(q) => {
                    q.extend(value.take());
                    false
                }
                None => {
                    *queue = Some(Vec::new());
                    true
                }
            }
        })
        // The thread is exiting: plain (recursive) drop.
        .unwrap_or(false);
    drop(value);
    if drainer {
        struct Done;
        impl Drop for Done {
            fn drop(&mut self) {
                let rest = DROPS.try_with(|c| c.borrow_mut().take()).ok().flatten();
                drop(rest);
            }
        }
        let _done = Done;
        while let Some(next) = DROPS.with(|c| c.borrow_mut().as_mut().and_then(Vec::pop)) {
            drop(next);
        }
    }
}

impl<D: ?Sized + 'static> SerArc<D> {
    /// Erase `c` to `D`, remembering how to decode it.
    pub fn new<C: Upcast<D> + Serialize + DeserializeOwned + 'static>(c: C) -> Self {
        SerArc {
            inner: ManuallyDrop::new(Arc::new(c).upcast()),
            decode: decode_impl::<C, D>,
            blob: Default::default(),
            volatile: false,
        }
    }

    /// [`SerArc::new`] for a value whose encoding may change over its life (interior
    /// state), so it is encoded again every time instead of once.
    pub fn new_volatile<C: Upcast<D> + Serialize + DeserializeOwned + 'static>(c: C) -> Self {
        let mut node = Self::new(c);
        node.volatile = true;
        node
    }

    /// The shared pointer.
    pub fn arc(&self) -> &Arc<D> {
        &self.inner
    }

    /// Whether both refer to the same value.
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    fn id(&self) -> u64 {
        Arc::as_ptr(&self.inner) as *const () as usize as u64
    }
}

impl<D: ?Sized + EncodeSelf + Send + Sync + 'static> GraphNode for SerArc<D> {
    fn node_id(&self) -> u64 {
        self.id()
    }

    fn decoder(&self) -> DecodeFn {
        self.decode
    }

    fn encoded(&self) -> Result<Arc<Encoded>, String> {
        if let Some(e) = self.blob.get() {
            return Ok(e.clone());
        }
        let outer = COLLECT.replace(Some(Vec::new()));
        let bytes = self.inner.encode_self();
        let children = COLLECT.replace(outer).unwrap_or_default();
        let encoded = Arc::new(Encoded {
            bytes: bytes?,
            children,
        });
        if self.volatile {
            return Ok(encoded);
        }
        Ok(self.blob.get_or_init(|| encoded).clone())
    }

    fn clone_node(&self) -> Box<dyn GraphNode> {
        Box::new(self.clone())
    }
}

struct Bytes<'a>(&'a [u8]);
impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<D: ?Sized + EncodeSelf + Send + Sync + 'static> Serialize for SerArc<D> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let collected = COLLECT.with(|c| {
            let mut met = c.take();
            let inside = met
                .as_mut()
                .map(|m| m.push(Box::new(self.clone())))
                .is_some();
            c.set(met);
            inside
        });
        if !collected {
            return Err(serde::ser::Error::custom(format!(
                "a {} can only be encoded by ship::seal",
                std::any::type_name::<Self>()
            )));
        }
        s.serialize_u64(self.id())
    }
}

impl<'de, D: ?Sized + 'static> Deserialize<'de> for SerArc<D> {
    fn deserialize<De: Deserializer<'de>>(d: De) -> Result<Self, De::Error> {
        let id = u64::deserialize(d)?;
        check_trusted().map_err(de::Error::custom)?;
        let found = DECODED.with(|m| {
            let m = m.borrow();
            let node = m.as_ref()?.get(&id)?;
            Some(node.downcast_ref::<SerArc<D>>().cloned())
        });
        match found {
            Some(Some(node)) => Ok(node),
            Some(None) => Err(de::Error::custom(format!(
                "trait-object type mismatch: node {id:x} is not a {}",
                std::any::type_name::<D>()
            ))),
            None => Err(de::Error::custom(format!(
                "node {id:x} is referenced before it is decoded"
            ))),
        }
    }
}

/// Encode `value` with every `SerArc` it reaches as one table (see the section comment),
/// appended to `out`: `(decoder tag, [(id, decoder offset, bytes)], value bytes)`.
fn encode_graph<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), ShipError> {
    let outer = COLLECT.replace(Some(Vec::new()));
    let root = codec::to_vec(value);
    let roots = COLLECT.replace(outer).unwrap_or_default();
    let root = root?;
    let mut entries: Vec<(u64, i64, Arc<Encoded>)> = Vec::new();
    let mut done: HashSet<u64> = HashSet::new();
    let mut on_stack: HashSet<u64> = HashSet::new();
    // (node, its encoding, the next child to visit)
    let mut stack: Vec<(Box<dyn GraphNode>, Arc<Encoded>, usize)> = Vec::new();
    for r in &roots {
        if done.contains(&r.node_id()) || !on_stack.insert(r.node_id()) {
            continue;
        }
        let enc = r.encoded().map_err(ShipError::Encode)?;
        stack.push((r.clone_node(), enc, 0));
        // Post-order: a node is written once all of its children are.
        while let Some((node, enc, next)) = stack.last_mut() {
            if let Some(child) = enc.children.get(*next) {
                *next += 1;
                let id = child.node_id();
                if !done.contains(&id) && on_stack.insert(id) {
                    let child = child.clone_node();
                    let enc = child.encoded().map_err(ShipError::Encode)?;
                    stack.push((child, enc, 0));
                }
            } else {
                let id = node.node_id();
                let off = code_offset(node.decoder() as usize);
                let enc = enc.clone();
                stack.pop();
                on_stack.remove(&id);
                if done.insert(id) {
                    entries.push((id, off, enc));
                }
            }
        }
    }
    let entries: Vec<(u64, i64, Bytes<'_>)> = entries
        .iter()
        .map(|(id, off, enc)| (*id, *off, Bytes(&enc.bytes)))
        .collect();
    let table = (type_tag::<DecodeFn>(), entries, Bytes(&root));
    let size = bincode::serialized_size(&table).map_err(|e| ShipError::Encode(e.to_string()))?;
    out.reserve(usize::try_from(size).unwrap_or(0));
    bincode::serialize_into(out, &table).map_err(|e| ShipError::Encode(e.to_string()))
}

/// Decode what [`encode_graph`] made. Code offsets are only followed on a thread inside a
/// [`TrustedScope`].
fn decode_graph<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ShipError> {
    type Table<'a> = (u64, Vec<(u64, i64, &'a [u8])>, &'a [u8]);
    let (tag, entries, root): Table<'_> = codec::from_slice_borrowed(bytes)?;
    if tag != type_tag::<DecodeFn>() {
        return Err(ShipError::Malformed("not a lineage table".into()));
    }
    struct Restore(Option<HashMap<u64, Box<dyn Any>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let ours = DECODED.with(|m| m.replace(self.0.take()));
            drop(ours);
        }
    }
    let _restore = Restore(DECODED.replace(Some(HashMap::with_capacity(entries.len()))));
    for (id, off, node) in entries {
        let addr = code_addr(off).map_err(ShipError::Malformed)?;
        // SAFETY: the binary is identical (checked before the trusted scope was entered)
        // and the table's tag proves the sender wrote offsets of `DecodeFn`s, so the same
        // offset is the same function here.
        let decode: DecodeFn = unsafe { std::mem::transmute::<usize, DecodeFn>(addr) };
        let node = decode(node).map_err(ShipError::Malformed)?;
        DECODED.with(|m| m.borrow_mut().as_mut().map(|m| m.insert(id, node)));
    }
    codec::from_slice(root)
}

// ───────────────────────── envelopes ─────────────────────────

/// A per-application secret shared by the driver and its executors.
#[derive(Clone, PartialEq, Eq)]
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

/// What travels: the sender's binary identity, a MAC, and the encoded value (the layout
/// bincode gives this struct, written by hand by [`seal`] to avoid copying the payload).
#[derive(Serialize, Deserialize)]
pub struct Envelope {
    exe: u64,
    mac: [u8; 32],
    payload: Vec<u8>,
}

/// Bytes before an envelope's payload: identity, MAC, payload length.
const ENVELOPE_HEADER: usize = 8 + 32 + 8;

/// Encode `value` into authenticated envelope bytes.
pub fn seal<T: Serialize>(value: &T, secret: &Secret) -> Result<Vec<u8>, ShipError> {
    let mut out = vec![0u8; ENVELOPE_HEADER];
    encode_graph(value, &mut out)?;
    let exe = exe_id();
    let payload = &out[ENVELOPE_HEADER..];
    let mac: [u8; 32] = secret.mac(exe, payload).finalize().into_bytes().into();
    let len = payload.len() as u64;
    out[..8].copy_from_slice(&exe.to_le_bytes());
    out[8..40].copy_from_slice(&mac);
    out[40..48].copy_from_slice(&len.to_le_bytes());
    Ok(out)
}

/// An envelope whose binary identity and MAC were checked: ready to decode.
pub struct Verified<'a> {
    mac: [u8; 32],
    payload: &'a [u8],
}

impl Verified<'_> {
    /// The envelope's MAC: equal MACs under one secret mean equal payloads, so it can key
    /// a cache of decoded values.
    pub fn mac(&self) -> [u8; 32] {
        self.mac
    }

    /// Decode the value.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, ShipError> {
        let _trusted = TrustedScope::enter();
        decode_graph(self.payload)
    }
}

/// Check envelope bytes made by [`seal`] in an identical binary, under `secret`.
pub fn verify<'a>(bytes: &'a [u8], secret: &Secret) -> Result<Verified<'a>, ShipError> {
    let short = || ShipError::Malformed("envelope shorter than its header".into());
    let header = bytes.get(..ENVELOPE_HEADER).ok_or_else(short)?;
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let exe = word(0);
    if exe != exe_id() {
        return Err(ShipError::BinaryMismatch {
            sender: exe,
            ours: exe_id(),
        });
    }
    let mut mac = [0u8; 32];
    mac.copy_from_slice(&header[8..40]);
    let payload = &bytes[ENVELOPE_HEADER..];
    if word(40) != payload.len() as u64 {
        return Err(ShipError::Malformed(format!(
            "envelope says {} payload bytes, has {}",
            word(40),
            payload.len()
        )));
    }
    secret
        .mac(exe, payload)
        .verify_slice(&mac)
        .map_err(|_| ShipError::BadMac)?;
    Ok(Verified { mac, payload })
}

/// Verify and decode envelope bytes made by [`seal`] in an identical binary.
pub fn open<T: DeserializeOwned>(bytes: &[u8], secret: &Secret) -> Result<T, ShipError> {
    verify(bytes, secret)?.decode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_from_slice_appends_a_decoded_vec() {
        let mut out = vec![(0u64, "a".to_string())];
        let more = vec![(1u64, "b".to_string()), (2, String::new())];
        codec::extend_from_slice(&mut out, &codec::to_vec(&more).expect("enc")).expect("dec");
        assert_eq!(out.len(), 3);
        assert_eq!(out[1..], more[..]);
        // A count larger than the input is an error, not a huge allocation or a panic.
        let mut lying = codec::to_vec(&more).expect("enc");
        lying[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(codec::extend_from_slice(&mut out, &lying).is_err());
        let wrong = codec::to_vec(&vec![1u8, 2]).expect("enc");
        assert!(codec::extend_from_slice::<(u64, String)>(&mut Vec::new(), &wrong).is_err());
    }

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

    fn graph<T: Serialize>(value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        encode_graph(value, &mut out).expect("encode");
        out
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
        let payload = graph(&job());
        let e = decode_graph::<Job>(&payload).err().expect("refused");
        assert!(e.to_string().contains("verified task envelope"), "{e}");
        let e = codec::to_vec(&job()).expect_err("refused");
        assert!(
            e.to_string().contains("only be encoded by ship::seal"),
            "{e}"
        );
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
        let a = graph(&shared);
        assert!(shared.blob.get().is_some(), "bytes cached");
        let b = graph(&shared.clone());
        assert_eq!(a, b);
    }

    /// A node holding its parent: a lineage of any depth.
    #[derive(Serialize, Deserialize)]
    struct Link {
        n: u64,
        parent: Option<SerArc<dyn Chain>>,
    }
    trait Chain: EncodeSelf + Send + Sync {
        fn link(&self) -> &Link;
    }
    impl Chain for Link {
        fn link(&self) -> &Link {
            self
        }
    }
    impl<C: Chain + 'static> Upcast<dyn Chain> for C {
        fn upcast(self: Arc<Self>) -> Arc<dyn Chain> {
            self
        }
    }

    fn chain(depth: u64) -> SerArc<dyn Chain> {
        let mut node: SerArc<dyn Chain> = SerArc::new(Link { n: 0, parent: None });
        for n in 1..depth {
            node = SerArc::new(Link {
                n,
                parent: Some(node),
            });
        }
        node
    }

    /// Runs `f` on a thread with a small stack, as a deep lineage would overflow it.
    fn on_small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(f)
            .expect("spawn")
            .join()
            .expect("no stack overflow")
    }

    #[test]
    fn deep_lineages_encode_decode_and_drop_without_recursion() {
        let secret = Secret::generate().expect("random");
        let (sizes, back) = on_small_stack(move || {
            let sizes: Vec<usize> = [1_000, 10_000]
                .iter()
                .map(|&d| seal(&chain(d), &secret).expect("seal").len())
                .collect();
            let deep = chain(100_000);
            let bytes = seal(&deep, &secret).expect("seal");
            drop(deep);
            let back: SerArc<dyn Chain> = open(&bytes, &secret).expect("open");
            let mut depth = 0;
            let mut at = Some(&back);
            while let Some(node) = at {
                assert_eq!(node.link().n, 99_999 - depth);
                depth += 1;
                at = node.link().parent.as_ref();
            }
            assert_eq!(depth, 100_000);
            (sizes, back)
        });
        // Linear in depth: ten times the nodes, about ten times the bytes.
        let ratio = sizes[1] as f64 / sizes[0] as f64;
        assert!((9.0..11.0).contains(&ratio), "sizes {sizes:?}");
        on_small_stack(move || drop(back));
    }

    #[test]
    fn a_node_reached_twice_is_decoded_once() {
        let secret = Secret::generate().expect("random");
        let shared = chain(3);
        let pair = (shared.clone(), shared);
        let back: (SerArc<dyn Chain>, SerArc<dyn Chain>) =
            open(&seal(&pair, &secret).expect("seal"), &secret).expect("open");
        assert!(Arc::ptr_eq(back.0.arc(), back.1.arc()));
    }

    #[test]
    fn secrets_round_trip_as_hex() {
        let s = Secret::generate().expect("random");
        assert_eq!(Secret::from_hex(&s.to_hex()).expect("parse").0, s.0);
        assert!(Secret::from_hex("zz").is_err());
    }
}
