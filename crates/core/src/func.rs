//! User functions as values the engine can ship.
//!
//! Code is never serialized: an executor runs the same binary, so a closure's *type* is its
//! code and only the values it captured travel. Two kinds of closure are accepted:
//! - a closure that captures nothing (zero-sized): its type is all there is;
//! - a closure written with the `spate::f!` macro: the macro moves the values the closure
//!   uses into one [`Captured`] (a clone of each, taken when the closure is made), and the
//!   closure captures only that. The values are encoded once per closure (so once per
//!   stage, not per record) and decoded once per executor.
//!
//! [`Fun::new`] refuses anything else at compile time (a capturing closure has another
//! size than both), with a message that says to wrap it in `f!`. `_with` operations
//! (`map_with(state, |state, x| ..)`) pass state explicitly; they stay as a second way.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

type AnyValue = Box<dyn Any + Send + Sync>;
type Encoder = fn(&(dyn Any + Send + Sync)) -> std::result::Result<Vec<u8>, String>;

/// The values one `f!` closure captured.
struct Slot {
    /// As the closure reads them: set when made (driver), decoded at first use (executor).
    value: OnceLock<AnyValue>,
    /// Their encoding: made at first shipping (driver), as received (executor).
    bytes: OnceLock<Vec<u8>>,
    /// Encodes `value`; `None` where the slot came from bytes.
    encode: Option<Encoder>,
}

thread_local! {
    /// Armed by [`Fun::new`] while it clones a closure, to learn which [`Captured`] the
    /// closure holds: `Some(None)` armed, `Some(Some(slot))` found.
    static PROBE: RefCell<Option<Option<Arc<Slot>>>> = const { RefCell::new(None) };
}

/// What an `f!` closure captures: its values, shared, typed as the tuple `C`.
///
/// Its size and alignment (64, 64) are what [`Fun::new`] recognizes an `f!` closure by at
/// compile time: a closure holding only this has exactly that layout, whatever `C` is.
#[repr(C, align(64))]
pub struct Captured<C> {
    slot: Arc<Slot>,
    /// `slot`'s value as a `*const C` once known (null until then): what the body reads
    /// per record, without the slot's checks.
    cached: AtomicPtr<()>,
    _values: PhantomData<fn() -> C>,
}

impl<C> Captured<C>
where
    C: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    /// Hold `values` for a closure (what `f!` expands to).
    pub fn new(values: C) -> Self {
        fn encode<C: Serialize + 'static>(
            v: &(dyn Any + Send + Sync),
        ) -> std::result::Result<Vec<u8>, String> {
            let v = v
                .downcast_ref::<C>()
                .ok_or_else(|| "captured values of an unexpected type".to_string())?;
            crate::ship::codec::to_vec(v).map_err(|e| e.to_string())
        }
        let value: AnyValue = Box::new(values);
        Captured {
            slot: Arc::new(Slot {
                value: OnceLock::from(value),
                bytes: OnceLock::new(),
                encode: Some(encode::<C>),
            }),
            cached: AtomicPtr::new(std::ptr::null_mut()),
            _values: PhantomData,
        }
    }

    /// The values, decoded from what the driver sent on first use in an executor.
    #[inline(always)]
    pub fn get(&self) -> &C {
        let p = self.cached.load(Ordering::Acquire);
        if p.is_null() {
            return self.get_slow();
        }
        // SAFETY: `cached` is only ever set (below) to the address of the C in
        // `self.slot`'s value, which `self` keeps alive and nothing mutates.
        unsafe { &*p.cast::<C>() }
    }

    #[cold]
    fn get_slow(&self) -> &C {
        let value = self.slot.value.get_or_init(|| {
            let bytes = self.slot.bytes.get().map(Vec::as_slice).unwrap_or_default();
            // The bytes came out of a verified envelope (only Fun's Deserialize, which
            // checks that, makes a slot without a value), so what they hold (closures,
            // accumulators) may be decoded as if inside it.
            let _trusted = crate::ship::TrustedScope::enter();
            match crate::ship::codec::from_slice::<C>(bytes) {
                Ok(v) => Box::new(v),
                Err(e) => panic!(
                    "spate: the values a closure captured could not be decoded as {}: {e}",
                    std::any::type_name::<C>()
                ),
            }
        });
        match value.downcast_ref::<C>() {
            Some(v) => {
                let p: *const C = v;
                self.cached.store(p.cast_mut().cast(), Ordering::Release);
                v
            }
            None => panic!(
                "spate: a closure's captured values are not a {}",
                std::any::type_name::<C>()
            ),
        }
    }
}

impl<C> Clone for Captured<C> {
    fn clone(&self) -> Self {
        PROBE.with(|p| {
            if let Some(found) = p.borrow_mut().as_mut() {
                *found = Some(self.slot.clone());
            }
        });
        Captured {
            slot: self.slot.clone(),
            cached: AtomicPtr::new(self.cached.load(Ordering::Acquire)),
            _values: PhantomData,
        }
    }
}

/// An operation's closure: zero-sized, or an `f!` closure plus its [`Captured`] values.
#[derive(Clone)]
pub struct Fun<F> {
    f: F,
    /// The values an `f!` closure holds (shared with it), for encoding.
    slot: Option<Arc<Slot>>,
}

/// True when `F` has the layout of a closure holding only a [`Captured`].
const fn is_captured_layout<F>() -> bool {
    size_of::<F>() == size_of::<Captured<()>>() && align_of::<F>() == align_of::<Captured<()>>()
}

impl<F: Clone + 'static> Fun<F> {
    /// Wrap a closure, checking at compile time that it captures nothing or is an `f!`
    /// closure.
    #[inline]
    pub fn new(f: F) -> Self {
        const {
            assert!(
                size_of::<F>() == 0 || is_captured_layout::<F>(),
                "spate: a closure passed to an RDD operation captures variables, so it cannot \
                 be shipped to executors. Wrap it in `spate::f!`, e.g. \
                 `rdd.filter(f!(|x| *x > threshold))`: f! ships what it captures (serde \
                 values). If it already is in f!, a captured variable is used only inside a \
                 macro f! cannot read: bind it to a local outside that macro."
            )
        };
        if size_of::<F>() == 0 {
            return Fun { f, slot: None };
        }
        // Learn the closure's Captured by cloning it (its Clone clones each capture).
        PROBE.with(|p| *p.borrow_mut() = Some(None));
        let copy = f.clone();
        let found = PROBE.with(|p| p.borrow_mut().take()).flatten();
        drop(copy);
        match found {
            Some(slot) => Fun {
                f,
                slot: Some(slot),
            },
            // Only a closure capturing one 64-byte, 64-aligned value that is not an
            // f! closure gets here (the compile-time check cannot tell them apart).
            None => panic!(
                "spate: the closure {} captures variables; wrap it in `spate::f!`",
                std::any::type_name::<F>()
            ),
        }
    }

    /// The wrapped closure.
    #[inline]
    pub fn get(&self) -> &F {
        &self.f
    }
}

impl<F> Serialize for Fun<F> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Some(slot) = &self.slot else {
            return s.serialize_none();
        };
        if let Some(bytes) = slot.bytes.get() {
            return s.serialize_some(bytes);
        }
        let (Some(encode), Some(value)) = (slot.encode, slot.value.get()) else {
            return Err(serde::ser::Error::custom(
                "a closure's captured values are missing",
            ));
        };
        let bytes = encode(value.as_ref()).map_err(|e| {
            serde::ser::Error::custom(format!("cannot encode a closure's captured values: {e}"))
        })?;
        s.serialize_some(slot.bytes.get_or_init(|| bytes))
    }
}

impl<'de, F: Clone + 'static> Deserialize<'de> for Fun<F> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = Option::<Vec<u8>>::deserialize(d)?;
        // Materializing a closure value is only meaningful in the binary that made it.
        crate::ship::check_trusted().map_err(serde::de::Error::custom)?;
        match bytes {
            None if size_of::<F>() == 0 => {
                // SAFETY: F is a zero-sized type and a value of it existed in the (identical)
                // binary that encoded this; reading a ZST from an aligned dangling pointer
                // reads no bytes and is equivalent to copying that value.
                let f = unsafe { std::ptr::NonNull::<F>::dangling().as_ptr().read() };
                Ok(Fun { f, slot: None })
            }
            Some(bytes) if size_of::<F>() != 0 && is_captured_layout::<F>() => {
                let slot = Arc::new(Slot {
                    value: OnceLock::new(),
                    bytes: OnceLock::from(bytes),
                    encode: None,
                });
                let captured = Captured::<()> {
                    slot: slot.clone(),
                    cached: AtomicPtr::new(std::ptr::null_mut()),
                    _values: PhantomData,
                };
                let mut f = std::mem::MaybeUninit::<F>::uninit();
                // SAFETY: the (identical) binary that encoded this made an F with
                // Fun::new, which checked that F holds one Captured and nothing else with
                // bytes: F has Captured's size and alignment, so the Captured is all of
                // F. Captured<C>'s layout does not depend on C (repr(C): an Arc, a pointer,
                // then PhantomData), and the closure reads its values through
                // Captured::<C>::get, which decodes `bytes` as C.
                let f = unsafe {
                    f.as_mut_ptr().cast::<Captured<()>>().write(captured);
                    f.assume_init()
                };
                Ok(Fun {
                    f,
                    slot: Some(slot),
                })
            }
            _ => Err(serde::de::Error::custom(
                "a closure's encoding does not match its type",
            )),
        }
    }
}

/// A zero-sized closure plus explicit, serializable state.
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound(
    serialize = "S: Serialize",
    deserialize = "S: serde::de::DeserializeOwned, F: Clone + 'static"
))]
pub struct With<S, F> {
    state: S,
    f: Fun<F>,
}

impl<S, F: Clone + 'static> With<S, F> {
    /// Pair `state` with a closure that receives `&state` first.
    pub fn new(state: S, f: F) -> Self {
        With {
            state,
            f: Fun::new(f),
        }
    }
}

/// A shippable one-argument function: a serde value (its state) whose type is its code.
pub trait Func<A, R>: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static {
    /// Call it.
    fn call(&self, a: A) -> R;
}

/// A shippable two-argument function.
pub trait Func2<A, B, R>: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static {
    /// Call it.
    fn call(&self, a: A, b: B) -> R;
}

impl<A, R, F> Func<A, R> for Fun<F>
where
    F: Fn(A) -> R + Clone + Send + Sync + 'static,
{
    #[inline(always)]
    fn call(&self, a: A) -> R {
        (self.f)(a)
    }
}

impl<A, B, R, F> Func2<A, B, R> for Fun<F>
where
    F: Fn(A, B) -> R + Clone + Send + Sync + 'static,
{
    #[inline(always)]
    fn call(&self, a: A, b: B) -> R {
        (self.f)(a, b)
    }
}

impl<A, R, S, F> Func<A, R> for With<S, F>
where
    S: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    F: Fn(&S, A) -> R + Clone + Send + Sync + 'static,
{
    #[inline(always)]
    fn call(&self, a: A) -> R {
        (self.f.f)(&self.state, a)
    }
}

impl<A, B, R, S, F> Func2<A, B, R> for With<S, F>
where
    S: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    F: Fn(&S, A, B) -> R + Clone + Send + Sync + 'static,
{
    #[inline(always)]
    fn call(&self, a: A, b: B) -> R {
        (self.f.f)(&self.state, a, b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zst_and_with_call_through() {
        let f = Fun::new(|x: u32| x + 1);
        assert_eq!(Func::call(&f, 1), 2);
        let g = With::new(10u32, |k: &u32, x: u32| x * k);
        assert_eq!(Func::call(&g, 3), 30);
        let h = Fun::new(|a: u32, b: u32| a.max(b));
        assert_eq!(Func2::call(&h, 3, 9), 9);
    }

    #[test]
    fn closures_and_state_ship_inside_envelopes_only() {
        use crate::ship::{Secret, codec, open, seal};
        fn round_trip<F: Clone + Send + Sync + 'static>(f: &With<u64, F>) -> With<u64, F> {
            let secret = Secret::generate().expect("random");
            let bytes = seal(f, &secret).expect("seal");
            open(&bytes, &secret).expect("open")
        }
        let f = With::new(3u64, |k: &u64, x: u64| x * k);
        let back = round_trip(&f);
        assert_eq!(Func::call(&back, 2u64), 6);
        // outside a verified envelope a closure value is never materialized
        fn decode_bare<F: Copy + 'static>(_: &Fun<F>, bytes: &[u8]) -> bool {
            codec::from_slice::<Fun<F>>(bytes).is_err()
        }
        let z = Fun::new(|x: u64| x + 1);
        assert!(decode_bare(&z, &codec::to_vec(&z).expect("encode")));
    }

    #[test]
    fn captured_values_ship_once_and_are_read_after_decoding() {
        use crate::ship::{Secret, seal};
        let secret = Secret::generate().expect("random");
        let values = Captured::new((5u64, "k".to_string()));
        let f = Fun::new(move |x: u64| format!("{}{}", values.get().1, x * values.get().0));
        assert_eq!(Func::call(&f, 2), "k10");
        let bytes = seal(&f, &secret).expect("seal");
        fn open_like<F: Clone + 'static>(_: &Fun<F>, bytes: &[u8], s: &Secret) -> Fun<F> {
            crate::ship::open(bytes, s).expect("open")
        }
        let back = open_like(&f, &bytes, &secret);
        assert_eq!(Func::call(&back, 3), "k15");
        // encoded once: the second envelope reuses the first encoding
        let slot = f.slot.as_ref().expect("an f! closure has a slot");
        let first = slot.bytes.get().expect("encoded").as_ptr();
        seal(&f, &secret).expect("seal again");
        assert_eq!(slot.bytes.get().expect("encoded").as_ptr(), first);
    }

    #[test]
    fn a_closure_shaped_like_an_f_closure_but_without_captured_values_is_refused() {
        #[repr(align(64))]
        #[derive(Clone, Copy)]
        struct Wide(u64);
        impl Wide {
            fn get(&self) -> u64 {
                self.0
            }
        }
        let wide = Wide(1);
        let g = move |x: u64| x + wide.get();
        let Err(refused) = std::panic::catch_unwind(|| Fun::new(g).slot.is_some()) else {
            panic!("accepted");
        };
        let msg = refused
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(
            msg.contains("captures variables; wrap it in `spate::f!`"),
            "{msg}"
        );
    }
}
