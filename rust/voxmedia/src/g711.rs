//! ITU-T G.711 mu-law and A-law, bit-exact with the ITU-T G.191 reference implementation.
//!
//! The encoders are written once, as the G.191 algorithm, and evaluated at compile time into
//! lookup tables: mu-law by the top 14 bits of the sample, A-law by the top 13. Note that the
//! reference forms the magnitude of a negative sample as `!x >> shift` (one's complement), which
//! is where CPython's `audioop.lin2ulaw` (two's complement) disagrees on 508 inputs.

use std::fmt;

/// Errors of the G.711 domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum G711Error {
    /// PCM16 input whose byte length is not a whole number of 2-byte samples.
    OddPcmLength(usize),
    /// Output buffer shorter than the input requires.
    OutputTooSmall { needed: usize, got: usize },
}

impl fmt::Display for G711Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            G711Error::OddPcmLength(n) => write!(
                f,
                "PCM16 input has an odd length of {n} bytes; it must be a multiple of 2 (16-bit samples)"
            ),
            G711Error::OutputTooSmall { needed, got } => {
                write!(f, "output buffer holds {got} items but {needed} are needed")
            }
        }
    }
}

impl std::error::Error for G711Error {}

/// G.191 `ulaw_compress` for one sample (the definition; tables are built from it).
pub const fn ulaw_compress_ref(x: i16) -> u8 {
    let x = x as i32;
    let mut absno = if x < 0 {
        ((!x) >> 2) + 33
    } else {
        (x >> 2) + 33
    };
    if absno > 0x1FFF {
        absno = 0x1FFF;
    }
    let mut i = absno >> 6;
    let mut segno = 1;
    while i != 0 {
        segno += 1;
        i >>= 1;
    }
    let high = 8 - segno;
    let low = 0x0F - ((absno >> segno) & 0x0F);
    let mut code = (high << 4) | low;
    if x >= 0 {
        code |= 0x80;
    }
    code as u8
}

/// G.191 `ulaw_expand` for one code.
pub const fn ulaw_expand_ref(code: u8) -> i16 {
    let code = code as i32;
    let sign = if code < 0x80 { -1 } else { 1 };
    let m = !code;
    let exponent = (m >> 4) & 0x07;
    let segment = exponent + 1;
    let mantissa = m & 0x0F;
    let step = 4 << segment;
    (sign * ((0x80 << exponent) + step * mantissa + step / 2 - 4 * 33)) as i16
}

/// G.191 `alaw_compress` for one sample.
pub const fn alaw_compress_ref(x: i16) -> u8 {
    let x = x as i32;
    let mut ix = if x < 0 { (!x) >> 4 } else { x >> 4 };
    if ix > 15 {
        let mut iexp = 1;
        while ix > 16 + 15 {
            ix >>= 1;
            iexp += 1;
        }
        ix -= 16;
        ix += iexp << 4;
    }
    if x >= 0 {
        ix |= 0x80;
    }
    (ix ^ 0x55) as u8
}

/// G.191 `alaw_expand` for one code.
pub const fn alaw_expand_ref(code: u8) -> i16 {
    let ix = (code as i32 ^ 0x55) & 0x7F;
    let iexp = ix >> 4;
    let mut mant = ix & 0x0F;
    if iexp > 0 {
        mant += 16;
    }
    mant = (mant << 4) + 0x08;
    if iexp > 1 {
        mant <<= iexp - 1;
    }
    (if code > 127 { mant } else { -mant }) as i16
}

// `!x >> k == !(x >> k)` for arithmetic shifts, so both encoders depend only on the top bits of
// the sample: index the tables by `(x >> k)` offset to be non-negative.
const ULAW_ENC: [u8; 1 << 14] = {
    let mut t = [0u8; 1 << 14];
    let mut i = 0;
    while i < (1 << 14) {
        t[i] = ulaw_compress_ref((((i as i32) - (1 << 13)) << 2) as i16);
        i += 1;
    }
    t
};

const ALAW_ENC: [u8; 1 << 13] = {
    let mut t = [0u8; 1 << 13];
    let mut i = 0;
    while i < (1 << 13) {
        t[i] = alaw_compress_ref((((i as i32) - (1 << 12)) << 3) as i16);
        i += 1;
    }
    t
};

/// mu-law code -> linear sample.
pub const ULAW_DEC: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_expand_ref(i as u8);
        i += 1;
    }
    t
};

/// A-law code -> linear sample.
pub const ALAW_DEC: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_expand_ref(i as u8);
        i += 1;
    }
    t
};

/// Which G.711 law.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    Ulaw,
    Alaw,
}

#[inline(always)]
pub fn ulaw_encode_sample(x: i16) -> u8 {
    ULAW_ENC[((x >> 2) as i32 + (1 << 13)) as usize]
}

#[inline(always)]
pub fn alaw_encode_sample(x: i16) -> u8 {
    ALAW_ENC[((x >> 3) as i32 + (1 << 12)) as usize]
}

#[inline(always)]
pub fn ulaw_decode_sample(c: u8) -> i16 {
    ULAW_DEC[c as usize]
}

#[inline(always)]
pub fn alaw_decode_sample(c: u8) -> i16 {
    ALAW_DEC[c as usize]
}

/// mu-law decode of `codes` into the start of `out` (the shorter of the two bounds the work);
/// the same values as `ULAW_DEC`. With AVX2, sixteen codes at a time by the G.711 formula:
/// a table lookup per sample was about a tenth of an inbound frame's cost.
#[inline]
pub fn ulaw_decode_slice(codes: &[u8], out: &mut [i16]) {
    let n = codes.len().min(out.len());
    let (codes, out) = (&codes[..n], &mut out[..n]);
    #[allow(unused_mut)]
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU reports AVX2.
        done = unsafe { ulaw_decode_avx2(codes, out) };
    }
    for (o, &c) in out[done..].iter_mut().zip(&codes[done..]) {
        *o = ULAW_DEC[c as usize];
    }
}

/// Decodes whole groups of sixteen; returns how many codes it decoded.
///
/// # Safety
/// The CPU must support AVX2; `out` at least as long as `codes`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn ulaw_decode_avx2(codes: &[u8], out: &mut [i16]) -> usize {
    use std::arch::x86_64::*;
    // c = !code; t = ((c & 15) << 3) + 0x84) << segment; sample = +-(t - 0x84) by the sign bit.
    // The variable shift is a multiply by 2^segment, looked up with a byte shuffle (the high
    // byte of each lane indexes with bit 7 set, which yields 0).
    let ff = _mm256_set1_epi16(0xFF);
    let low4 = _mm256_set1_epi16(0x0F);
    let seven = _mm256_set1_epi16(7);
    let bias = _mm256_set1_epi16(0x84);
    let sign = _mm256_set1_epi16(0x80);
    let hi_off = _mm256_set1_epi16(0x8000u16 as i16);
    #[rustfmt::skip]
    let pow2 = _mm256_setr_epi8(
        1, 2, 4, 8, 16, 32, 64, -128, 0, 0, 0, 0, 0, 0, 0, 0,
        1, 2, 4, 8, 16, 32, 64, -128, 0, 0, 0, 0, 0, 0, 0, 0,
    );
    let n = codes.len().min(out.len());
    let mut i = 0;
    while i + 16 <= n {
        let x = _mm256_cvtepu8_epi16(_mm_loadu_si128(codes.as_ptr().add(i).cast()));
        let c = _mm256_xor_si256(x, ff);
        let mant = _mm256_and_si256(c, low4);
        let seg = _mm256_and_si256(_mm256_srli_epi16(c, 4), seven);
        let p = _mm256_shuffle_epi8(pow2, _mm256_or_si256(seg, hi_off));
        let t = _mm256_mullo_epi16(_mm256_add_epi16(_mm256_slli_epi16(mant, 3), bias), p);
        let neg = _mm256_cmpeq_epi16(_mm256_and_si256(c, sign), sign);
        let v = _mm256_sub_epi16(t, bias);
        let y = _mm256_sub_epi16(_mm256_xor_si256(v, neg), neg);
        _mm256_storeu_si256(out.as_mut_ptr().add(i).cast(), y);
        i += 16;
    }
    i
}

/// mu-law encode of `pcm` into the start of `out` (the shorter bounds the work); the same codes
/// as `ulaw_encode_sample`. With AVX2, 32 samples at a time by the G.191 formula: 160 table
/// lookups were most of the cost of building an outbound message.
#[inline]
pub fn ulaw_encode_slice(pcm: &[i16], out: &mut [u8]) {
    let n = pcm.len().min(out.len());
    let (pcm, out) = (&pcm[..n], &mut out[..n]);
    #[allow(unused_mut)]
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU reports AVX2.
        done = unsafe { ulaw_encode_avx2(pcm, out) };
    }
    for (o, &x) in out[done..].iter_mut().zip(&pcm[done..]) {
        *o = ulaw_encode_sample(x);
    }
}

/// Encodes whole groups of 32; returns how many samples it encoded.
///
/// # Safety
/// The CPU must support AVX2; `out` at least as long as `pcm`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn ulaw_encode_avx2(pcm: &[i16], out: &mut [u8]) -> usize {
    use std::arch::x86_64::*;
    // G.191: absno = min((x or !x for negatives) >> 2 + 33, 0x1FFF); segno = 1 + bit length
    // of absno >> 6; code = (8 - segno) << 4 | 15 - (absno >> segno & 15), bit 7 set for
    // x >= 0. The bit length comes from two nibble lookups (byte shuffles; the high byte of
    // each lane indexes with bit 7 set, which yields 0), and the variable right shift is the
    // high half of a multiply by 2^(16 - segno), itself a lookup of 2^(8 - segno) shifted up.
    let n = pcm.len().min(out.len());
    let mut i = 0;
    while i + 32 <= n {
        let a = ulaw_code16(_mm256_loadu_si256(pcm.as_ptr().add(i).cast()));
        let b = ulaw_code16(_mm256_loadu_si256(pcm.as_ptr().add(i + 16).cast()));
        // packus interleaves 128-bit lanes (a0 b0 a1 b1); restore sample order.
        let packed = _mm256_permute4x64_epi64(_mm256_packus_epi16(a, b), 0b11_01_10_00);
        _mm256_storeu_si256(out.as_mut_ptr().add(i).cast(), packed);
        i += 32;
    }
    i
}

/// Sixteen mu-law codes (one per 16-bit lane) for sixteen samples.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn ulaw_code16(x: std::arch::x86_64::__m256i) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    let hi_off = _mm256_set1_epi16(0x8000u16 as i16);
    let low4 = _mm256_set1_epi16(0x0F);
    let bias = _mm256_set1_epi16(33);
    let cap = _mm256_set1_epi16(0x1FFF);
    let one = _mm256_set1_epi16(1);
    let top = _mm256_set1_epi16(0x8F);
    let pos = _mm256_set1_epi16(0x80);
    #[rustfmt::skip]
    let (len_lo, len_hi, pow) = (
        // bit length of 0..15
        _mm256_setr_epi8(0, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4,
                         0, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4),
        // bit length of (h << 4) for h = 0..7
        _mm256_setr_epi8(0, 5, 6, 6, 7, 7, 7, 7, 0, 0, 0, 0, 0, 0, 0, 0,
                         0, 5, 6, 6, 7, 7, 7, 7, 0, 0, 0, 0, 0, 0, 0, 0),
        // 2^(8 - segno) for segno = 1..8
        _mm256_setr_epi8(0, -128, 64, 32, 16, 8, 4, 2, 1, 0, 0, 0, 0, 0, 0, 0,
                         0, -128, 64, 32, 16, 8, 4, 2, 1, 0, 0, 0, 0, 0, 0, 0),
    );
    let neg = _mm256_srai_epi16(x, 15);
    let mag = _mm256_srli_epi16(_mm256_xor_si256(x, neg), 2);
    let absno = _mm256_min_epi16(_mm256_add_epi16(mag, bias), cap);
    let i = _mm256_srli_epi16(absno, 6);
    let lo = _mm256_or_si256(_mm256_and_si256(i, low4), hi_off);
    let hi = _mm256_or_si256(_mm256_srli_epi16(i, 4), hi_off);
    let bits = _mm256_max_epi16(
        _mm256_shuffle_epi8(len_lo, lo),
        _mm256_shuffle_epi8(len_hi, hi),
    );
    let segno = _mm256_add_epi16(bits, one);
    let mult = _mm256_slli_epi16(_mm256_shuffle_epi8(pow, _mm256_or_si256(segno, hi_off)), 8);
    let mant = _mm256_and_si256(_mm256_mulhi_epu16(absno, mult), low4);
    let code = _mm256_sub_epi16(_mm256_sub_epi16(top, _mm256_slli_epi16(segno, 4)), mant);
    _mm256_add_epi16(code, _mm256_andnot_si256(neg, pos))
}

/// Exact sum of squares of PCM16 samples (frame energy for the jitter buffer and the VAD).
/// Adjacent squares are summed in 32 bits first (at most 2 * 2^30 = 2^31, exact as u32): that
/// is SSE2's `pmaddwd`, eight samples per step, where widening every square to 64 bits took
/// several times longer.
#[inline]
pub fn sum_sq_i16(x: &[i16]) -> u64 {
    let mut s: u64 = 0;
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of x86_64; loads stay within `x` (i + 8 <= len).
        unsafe {
            let zero = _mm_setzero_si128();
            let mut acc = zero;
            while i + 8 <= x.len() {
                let v = _mm_loadu_si128(x.as_ptr().add(i).cast());
                let m = _mm_madd_epi16(v, v); // four pair sums, each read as u32
                acc = _mm_add_epi64(acc, _mm_unpacklo_epi32(m, zero));
                acc = _mm_add_epi64(acc, _mm_unpackhi_epi32(m, zero));
                i += 8;
            }
            let mut lanes = [0u64; 2];
            _mm_storeu_si128(lanes.as_mut_ptr().cast(), acc);
            s += lanes[0] + lanes[1];
        }
    }
    s + x[i..]
        .iter()
        .map(|&v| (v as i32 * v as i32) as u64)
        .sum::<u64>()
}

impl Law {
    #[inline]
    pub fn decode_table(self) -> &'static [i16; 256] {
        match self {
            Law::Ulaw => &ULAW_DEC,
            Law::Alaw => &ALAW_DEC,
        }
    }

    /// Decode codes into samples. `out` must be at least as long as `codes`.
    pub fn decode_into(self, codes: &[u8], out: &mut [i16]) -> Result<(), G711Error> {
        check_out(codes.len(), out.len())?;
        if self == Law::Ulaw {
            ulaw_decode_slice(codes, out);
            return Ok(());
        }
        let t = self.decode_table();
        for (o, &c) in out.iter_mut().zip(codes) {
            *o = t[c as usize];
        }
        Ok(())
    }

    /// Encode samples into codes. `out` must be at least as long as `pcm`.
    pub fn encode_into(self, pcm: &[i16], out: &mut [u8]) -> Result<(), G711Error> {
        check_out(pcm.len(), out.len())?;
        match self {
            Law::Ulaw => ulaw_encode_slice(pcm, out),
            Law::Alaw => pcm
                .iter()
                .zip(out.iter_mut())
                .for_each(|(&x, o)| *o = alaw_encode_sample(x)),
        }
        Ok(())
    }

    /// Decode codes straight to little-endian PCM16 bytes (`out.len() >= 2 * codes.len()`).
    pub fn decode_to_le_bytes(self, codes: &[u8], out: &mut [u8]) -> Result<(), G711Error> {
        check_out(codes.len() * 2, out.len())?;
        let t = self.decode_table();
        for (o, &c) in out.chunks_exact_mut(2).zip(codes) {
            o.copy_from_slice(&t[c as usize].to_le_bytes());
        }
        Ok(())
    }

    /// Encode little-endian PCM16 bytes to codes (`out.len() >= pcm.len() / 2`).
    pub fn encode_from_le_bytes(self, pcm: &[u8], out: &mut [u8]) -> Result<(), G711Error> {
        if pcm.len() % 2 != 0 {
            return Err(G711Error::OddPcmLength(pcm.len()));
        }
        check_out(pcm.len() / 2, out.len())?;
        let samples = pcm
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]));
        match self {
            Law::Ulaw => samples
                .zip(out.iter_mut())
                .for_each(|(x, o)| *o = ulaw_encode_sample(x)),
            Law::Alaw => samples
                .zip(out.iter_mut())
                .for_each(|(x, o)| *o = alaw_encode_sample(x)),
        }
        Ok(())
    }
}

fn check_out(needed: usize, got: usize) -> Result<(), G711Error> {
    if got < needed {
        Err(G711Error::OutputTooSmall { needed, got })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// The vector encoder against the G.191 reference for every input, at every offset of
    /// a group of 32 (the tail runs the scalar path).
    #[test]
    fn ulaw_encode_slice_matches_the_reference_for_all_inputs() {
        let all: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        for skip in [0, 1, 13, 31] {
            let pcm = &all[skip..];
            let mut out = vec![0u8; pcm.len()];
            ulaw_encode_slice(pcm, &mut out);
            for (&x, &c) in pcm.iter().zip(&out) {
                assert_eq!(c, ulaw_compress_ref(x), "x = {x}");
            }
        }
    }

    #[test]
    fn ulaw_slice_decode_matches_the_table_for_every_code_and_length() {
        let codes: Vec<u8> = (0..600u32).map(|i| (i * 7 % 256) as u8).collect();
        for len in [0, 1, 15, 16, 17, 160, 256, 600] {
            let mut out = vec![0i16; len];
            super::ulaw_decode_slice(&codes[..len], &mut out);
            for (k, (&c, &y)) in codes.iter().zip(&out).enumerate() {
                assert_eq!(y, ULAW_DEC[c as usize], "len {len} at {k} code {c}");
            }
        }
        let all: Vec<u8> = (0..=255).collect();
        let mut out = vec![0i16; 256];
        super::ulaw_decode_slice(&all, &mut out);
        assert_eq!(&out[..], &ULAW_DEC[..]);
    }

    #[test]
    fn sum_sq_is_exact_at_every_length_and_extreme() {
        let mut x: Vec<i16> = (0..203)
            .map(|i| (i * 7919 % 65536 - 32768) as i16)
            .collect();
        x[..40].fill(-32768);
        for len in 0..x.len() {
            let want: u64 = x[..len].iter().map(|&v| (v as i64 * v as i64) as u64).sum();
            assert_eq!(super::sum_sq_i16(&x[..len]), want, "len {len}");
        }
    }

    use super::*;

    /// mu-law from the G.711 definition (Table 2a): bias 33 in the 14-bit magnitude domain,
    /// segment = position of the leading one, code bits inverted, sign bit set for x >= 0.
    /// Magnitude of a negative sample per G.191 is the one's complement.
    fn ulaw_by_segments(x: i16) -> u8 {
        let neg = x < 0;
        let mag14 = if neg {
            (!(x as i32)) >> 2
        } else {
            (x as i32) >> 2
        };
        let biased = (mag14 + 33).min(8191);
        let seg = (0..8).rev().find(|&s| biased >= (32 << s)).unwrap_or(0);
        let step = (biased >> (seg + 1)) & 0xF;
        let code = ((seg << 4) | step) as u8 ^ 0x7F;
        if neg {
            code
        } else {
            code | 0x80
        }
    }

    #[test]
    fn ulaw_tables_match_segment_definition_for_every_input() {
        for x in i16::MIN..=i16::MAX {
            assert_eq!(ulaw_encode_sample(x), ulaw_by_segments(x), "x = {x}");
            assert_eq!(ulaw_encode_sample(x), ulaw_compress_ref(x), "x = {x}");
            assert_eq!(alaw_encode_sample(x), alaw_compress_ref(x), "x = {x}");
        }
    }

    #[test]
    fn decode_reencode_is_identity_except_negative_zero_codes() {
        for c in 0..=255u8 {
            let y = ulaw_decode_sample(c);
            // 0x7F decodes to 0 like 0xFF; G.711 maps 0 to the positive code.
            if c != 0x7F {
                assert_eq!(ulaw_encode_sample(y), c, "mu code {c:#x}");
            }
            assert_eq!(
                alaw_encode_sample(alaw_decode_sample(c)),
                c,
                "A code {c:#x}"
            );
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(ulaw_encode_sample(0), 0xFF);
        assert_eq!(ulaw_encode_sample(-1), 0x7F);
        assert_eq!(ulaw_decode_sample(0x00), -32124);
        assert_eq!(ulaw_decode_sample(0x80), 32124);
        assert_eq!(alaw_encode_sample(0), 0xD5);
        assert_eq!(alaw_decode_sample(0xD5), 8);
        assert_eq!(alaw_decode_sample(0x2A), -32256);
    }

    #[test]
    fn decode_is_monotonic_within_sign() {
        // Codes 0x80..0xFF: larger code -> smaller positive value (inverted bits).
        for c in 0x80..0xFFu8 {
            assert!(ulaw_decode_sample(c) > ulaw_decode_sample(c + 1));
        }
    }

    #[test]
    fn odd_length_is_an_error_naming_the_length() {
        let mut out = [0u8; 4];
        let e = Law::Ulaw
            .encode_from_le_bytes(&[0, 0, 0], &mut out)
            .unwrap_err();
        assert_eq!(e, G711Error::OddPcmLength(3));
        assert!(e.to_string().contains('3'));
    }

    /// The ITU-T G.191 conformance sweep, when `../shared/testdata/g711` is beside the repo.
    /// CI always has it; set CI=true to make its absence a failure.
    #[test]
    fn itu_g191_sweep() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/g711");
        if !dir.exists() {
            assert!(
                std::env::var("CI").is_err(),
                "CI run without {}",
                dir.display()
            );
            eprintln!(
                "itu_g191_sweep: {} not found, skipped outside CI",
                dir.display()
            );
            return;
        }
        let words = |name: &str| -> Vec<i16> {
            std::fs::read(dir.join(name))
                .unwrap()
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect()
        };
        let src = words("sweep.src");
        assert_eq!(src.len(), 65536);
        for (law, enc, dec, rt) in [
            (Law::Ulaw, "sweep-r.u", "sweep-r.u-u", "sweep-r.reu"),
            (Law::Alaw, "sweep-r.a", "sweep-r.a-a", "sweep-r.rea"),
        ] {
            let (e, d, r) = (words(enc), words(dec), words(rt));
            let mut codes = vec![0u8; src.len()];
            law.encode_into(&src, &mut codes).unwrap();
            let mut back = vec![0i16; src.len()];
            law.decode_into(&codes, &mut back).unwrap();
            for i in 0..src.len() {
                assert_eq!(codes[i] as i16, e[i], "{law:?} encode of {}", src[i]);
                assert_eq!(back[i], r[i], "{law:?} round trip of {}", src[i]);
                let mut one = [0i16];
                law.decode_into(&[e[i] as u8], &mut one).unwrap();
                assert_eq!(one[0], d[i], "{law:?} decode of {:#x}", e[i]);
            }
        }
    }
}
