//! A wrapper for secrets: never printed, zeroized on drop.

use std::fmt;
use zeroize::Zeroize;

/// Holds a secret (key, token, password). `Debug` and `Display` print `*****`;
/// the memory is overwritten when the value is dropped.
pub struct Sensitive<T: Zeroize>(T);

impl<T: Zeroize> Sensitive<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }
    /// The secret itself. Named so every use stands out in review.
    pub fn expose(&self) -> &T {
        &self.0
    }
    /// The secret, writable (to fill a derived key in place).
    pub fn expose_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Zeroize + Clone> Clone for Sensitive<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: Zeroize> Drop for Sensitive<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

impl<T: Zeroize> fmt::Display for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_secret() {
        let s = Sensitive::new([0x41u8; 32]);
        assert_eq!(format!("{s:?} {s}"), "***** *****");
        assert_eq!(s.expose()[0], 0x41);
    }
}
