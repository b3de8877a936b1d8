//! `bspatch` in the format of Colin Percival's bsdiff as Matthew Endsley's library
//! (bundled by libostree) writes it with no header: repeated control triples
//! (copy-with-add length, extra length, old-position seek; 8-byte sign-magnitude
//! little-endian each), each followed by its add bytes and its extra bytes.

/// Why a patch was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BspatchError {
    #[error("the patch ends before the file it makes")]
    Truncated,
    #[error("the patch writes past the {0} bytes of the file it makes")]
    PastEnd(u64),
    #[error("the patch has a negative or oversized length")]
    BadLength,
}

/// Applies `patch` to `old`, making exactly `new_size` bytes.
pub fn bspatch(old: &[u8], new_size: usize, patch: &[u8]) -> Result<Vec<u8>, BspatchError> {
    let mut new = vec![0u8; new_size];
    let mut patch = patch;
    let mut take = |n: usize| -> Result<&[u8], BspatchError> {
        if patch.len() < n {
            return Err(BspatchError::Truncated);
        }
        let (head, rest) = patch.split_at(n);
        patch = rest;
        Ok(head)
    };
    let (mut old_pos, mut new_pos) = (0i64, 0usize);
    while new_pos < new_size {
        let mut control = [0i64; 3];
        for value in &mut control {
            *value = offtin(take(8)?.try_into().expect("8 bytes"));
        }
        let [add, extra, seek] = control;
        let add = length(add, new_pos, new_size)?;
        new[new_pos..new_pos + add].copy_from_slice(take(add)?);
        for (i, byte) in new[new_pos..new_pos + add].iter_mut().enumerate() {
            let at = old_pos + i as i64;
            if (0..old.len() as i64).contains(&at) {
                *byte = byte.wrapping_add(old[at as usize]);
            }
        }
        new_pos += add;
        old_pos += add as i64;
        let extra = length(extra, new_pos, new_size)?;
        new[new_pos..new_pos + extra].copy_from_slice(take(extra)?);
        new_pos += extra;
        old_pos = old_pos.checked_add(seek).ok_or(BspatchError::BadLength)?;
    }
    Ok(new)
}

/// A control length: 0 to `i32::MAX` (as bsdiff checks) and within the target.
fn length(n: i64, new_pos: usize, new_size: usize) -> Result<usize, BspatchError> {
    if !(0..=i64::from(i32::MAX)).contains(&n) {
        return Err(BspatchError::BadLength);
    }
    let n = n as usize;
    if new_pos + n > new_size {
        return Err(BspatchError::PastEnd(new_size as u64));
    }
    Ok(n)
}

/// bsdiff's signed 64-bit integer: little-endian magnitude, sign in the top bit.
fn offtin(bytes: [u8; 8]) -> i64 {
    let magnitude = (u64::from_le_bytes(bytes) & !(1 << 63)) as i64;
    if bytes[7] & 0x80 != 0 {
        -magnitude
    } else {
        magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offtout(x: i64) -> [u8; 8] {
        let mut bytes = x.unsigned_abs().to_le_bytes();
        if x < 0 {
            bytes[7] |= 0x80;
        }
        bytes
    }

    fn control(add: i64, extra: i64, seek: i64) -> Vec<u8> {
        [offtout(add), offtout(extra), offtout(seek)].concat()
    }

    #[test]
    fn adds_to_old_bytes_then_appends_extra() {
        let old = b"hello world";
        // "hello" + 0 → "hello"; then extra ", there"; then seek past " world".
        let mut patch = control(5, 7, 6);
        patch.extend([0u8; 5]);
        patch.extend(b", there");
        // Then one byte added to old 'd' (position 11 - 1 = 10 after a -1 seek).
        patch.extend(control(0, 0, -1));
        patch.extend(control(1, 0, 0));
        patch.push(b'!'.wrapping_sub(b'd'));
        assert_eq!(bspatch(old, 13, &patch).unwrap(), b"hello, there!");
        assert_eq!(offtin(offtout(-5)), -5);
    }

    #[test]
    fn refuses_a_patch_that_writes_past_its_target_or_ends_early() {
        let patch = [control(4, 0, 0), vec![1, 2, 3, 4]].concat();
        assert_eq!(bspatch(b"", 3, &patch), Err(BspatchError::PastEnd(3)));
        assert_eq!(bspatch(b"", 5, &patch), Err(BspatchError::Truncated));
        let negative = [control(-1, 0, 0)].concat();
        assert_eq!(bspatch(b"", 5, &negative), Err(BspatchError::BadLength));
        assert_eq!(bspatch(b"", 0, b"").unwrap(), b"");
    }
}
