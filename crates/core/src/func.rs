//! User functions as values the engine can ship.
//!
//! Code is never serialized: a closure passed to an operation must be zero-sized (it
//! captures nothing), so its *type* is its whole behaviour and an executor running the
//! same binary can re-create it. State the closure needs goes explicitly through the
//! `_with` operations (`map_with(state, |state, x| ..)`), where it is serialized as data.
//! [`Zst::new`] enforces the rule at compile time with a message that says what to do.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-capturing closure. Construction fails to compile if `F` captures anything.
#[derive(Clone, Copy)]
pub struct Zst<F>(F);

impl<F: Copy + 'static> Zst<F> {
    /// Wrap a closure, checking at compile time that it captures nothing.
    #[inline]
    pub const fn new(f: F) -> Self {
        const {
            assert!(
                std::mem::size_of::<F>() == 0,
                "spate: a closure passed to an RDD operation captures variables, so it cannot \
                 be shipped to executors. Pass the captured values explicitly with the `_with` \
                 form of the operation, e.g. `rdd.map_with(value, |value, x| ...)` or \
                 `rdd.filter_with(value, |value, x| ...)`."
            )
        };
        Zst(f)
    }

    /// The wrapped closure.
    #[inline]
    pub fn get(&self) -> &F {
        &self.0
    }
}

impl<F> Serialize for Zst<F> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl<'de, F: Copy + 'static> Deserialize<'de> for Zst<F> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d)?;
        // Materializing a closure value is only meaningful in the binary that made it.
        crate::ship::check_trusted().map_err(serde::de::Error::custom)?;
        const { assert!(std::mem::size_of::<F>() == 0) };
        // SAFETY: F is a zero-sized Copy type and a value of it existed in the (identical)
        // binary that encoded this unit; reading a ZST from an aligned dangling pointer
        // reads no bytes and is equivalent to copying that value.
        Ok(Zst(unsafe {
            std::ptr::NonNull::<F>::dangling().as_ptr().read()
        }))
    }
}

/// A zero-sized closure plus explicit, serializable state.
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound(
    serialize = "S: Serialize",
    deserialize = "S: serde::de::DeserializeOwned, F: Copy + 'static"
))]
pub struct With<S, F> {
    state: S,
    f: Zst<F>,
}

impl<S, F: Copy + 'static> With<S, F> {
    /// Pair `state` with a non-capturing closure that receives `&state` first.
    pub fn new(state: S, f: F) -> Self {
        With {
            state,
            f: Zst::new(f),
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

impl<A, R, F> Func<A, R> for Zst<F>
where
    F: Fn(A) -> R + Copy + Send + Sync + 'static,
{
    #[inline(always)]
    fn call(&self, a: A) -> R {
        (self.0)(a)
    }
}

impl<A, B, R, F> Func2<A, B, R> for Zst<F>
where
    F: Fn(A, B) -> R + Copy + Send + Sync + 'static,
{
    #[inline(always)]
    fn call(&self, a: A, b: B) -> R {
        (self.0)(a, b)
    }
}

impl<A, R, S, F> Func<A, R> for With<S, F>
where
    S: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    F: Fn(&S, A) -> R + Copy + Send + Sync + 'static,
{
    #[inline(always)]
    fn call(&self, a: A) -> R {
        (self.f.0)(&self.state, a)
    }
}

impl<A, B, R, S, F> Func2<A, B, R> for With<S, F>
where
    S: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    F: Fn(&S, A, B) -> R + Copy + Send + Sync + 'static,
{
    #[inline(always)]
    fn call(&self, a: A, b: B) -> R {
        (self.f.0)(&self.state, a, b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zst_and_with_call_through() {
        let f = Zst::new(|x: u32| x + 1);
        assert_eq!(Func::call(&f, 1), 2);
        let g = With::new(10u32, |k: &u32, x: u32| x * k);
        assert_eq!(Func::call(&g, 3), 30);
        let h = Zst::new(|a: u32, b: u32| a.max(b));
        assert_eq!(Func2::call(&h, 3, 9), 9);
    }

    #[test]
    fn closures_and_state_ship_inside_envelopes_only() {
        use crate::ship::{Secret, codec, open, seal};
        fn round_trip<F: Copy + Send + Sync + 'static>(f: &With<u64, F>) -> With<u64, F> {
            let secret = Secret::generate().expect("random");
            let bytes = seal(f, &secret).expect("seal");
            open(&bytes, &secret).expect("open")
        }
        let f = With::new(3u64, |k: &u64, x: u64| x * k);
        let back = round_trip(&f);
        assert_eq!(Func::call(&back, 2u64), 6);
        // outside a verified envelope a closure value is never materialized
        fn decode_bare<F: Copy + 'static>(_: &Zst<F>, bytes: &[u8]) -> bool {
            codec::from_slice::<Zst<F>>(bytes).is_err()
        }
        let z = Zst::new(|x: u64| x + 1);
        assert!(decode_bare(&z, &codec::to_vec(&z).expect("encode")));
    }
}
