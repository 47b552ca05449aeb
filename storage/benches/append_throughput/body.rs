//! The messages the append benchmark sends: the same sentence every time, or words drawn from a
//! vocabulary (`BENCH_BODY=varied`), which is what a full-text index sees in real chat.

/// What each message says.
#[derive(Clone, Copy)]
pub enum Body {
    /// The same sentence of about sixty characters every time.
    Fixed,
    /// Eleven words of a vocabulary of [`VOCABULARY`], common ones (low numbers) more often.
    Varied,
}

const FIXED_BODY: &str = "a typical chat message of about sixty characters, give or take";

/// Distinct words of [`Body::Varied`].
const VOCABULARY: u64 = 20_000;

impl Body {
    /// The body of one message; `state` is the sender's random state ([`random_state`]).
    pub fn text(self, state: &mut u64) -> String {
        match self {
            Body::Fixed => FIXED_BODY.into(),
            Body::Varied => {
                let mut words = Vec::with_capacity(11);
                for _ in 0..11 {
                    *state ^= *state << 13;
                    *state ^= *state >> 7;
                    *state ^= *state << 17;
                    // u² of a uniform u in [0, 1): word n is drawn about 1/√n as often as word 1.
                    let u = (*state >> 11) as f64 / (1u64 << 53) as f64;
                    words.push(word((u * u * VOCABULARY as f64) as u64));
                }
                words.join(" ")
            }
        }
    }
}

/// The xorshift64 state of sender `n` (splitmix64 of `n`, so that senders' sequences differ from
/// their first word on; never zero).
pub fn random_state(n: usize) -> u64 {
    let mut z = (n as u64)
        .wrapping_add(1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) | 1
}

/// Word number `n` of the vocabulary, in letters (`aaaa`, `aaab`, …), so that Postgres's
/// `simple` configuration reads it as one word.
fn word(mut n: u64) -> String {
    let mut letters = Vec::new();
    for _ in 0..4 {
        letters.push(b'a' + (n % 26) as u8);
        n /= 26;
    }
    while n > 0 {
        letters.push(b'a' + (n % 26) as u8);
        n /= 26;
    }
    letters.reverse();
    String::from_utf8(letters).expect("ASCII letters")
}
