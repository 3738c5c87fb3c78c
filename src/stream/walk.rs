//! The default chunk shape (`choices[0].delta.content`, `usage`) read in one
//! pass over the event's bytes: no JSON tree, no deserializer, no
//! allocation. It is the hot path of every streamed request.
//!
//! It answers only when it is sure. Anything unusual (an escaped key, a
//! `\u` escape of a surrogate, a count that is not plain digits, `choices`
//! as an object, nesting past [`MAX_DEPTH`], or bytes that are not JSON)
//! gives `None`, and the generic reader decides; so both readers always
//! agree, and the generic one defines the meaning.

/// Deepest nesting the walk follows (the generic reader allows 128).
const MAX_DEPTH: u32 = 64;

/// A JSON string as it stands between its quotes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct RawStr<'a> {
    /// The string with its quotes, as JSON (valid UTF-8).
    pub quoted: &'a [u8],
    /// It holds escapes, so its text is not the bytes between the quotes.
    pub escaped: bool,
}

impl<'a> RawStr<'a> {
    /// The bytes between the quotes.
    pub fn raw(&self) -> &'a [u8] {
        &self.quoted[1..self.quoted.len() - 1]
    }
}

/// The values the default pointers reach; a later duplicate key replaces an
/// earlier one, as in the generic reader.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Found<'a> {
    /// `content`, `reasoning_content`, `reasoning` of the first choice's
    /// delta, where they are strings.
    pub content: [Option<RawStr<'a>>; 3],
    pub completion_tokens: Option<u64>,
    pub prompt_tokens: Option<u64>,
}

/// Bytes that end a run of plain string bytes: the quote, the escape,
/// control characters (not allowed in JSON strings) and the start of a
/// multi-byte character (checked as UTF-8 once the string ends).
const SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = b < 0x20 || b >= 0x80 || b == b'"' as usize || b == b'\\' as usize;
        b += 1;
    }
    t
};

/// Where in the document a value sits, as far as the pointers care.
#[derive(Clone, Copy, PartialEq)]
enum At {
    Top,
    Choices,
    FirstChoice,
    Delta,
    Usage,
    Elsewhere,
}

/// Read `data`; `None` when the walk cannot vouch for the answer.
pub(super) fn walk(data: &[u8]) -> Option<Found<'_>> {
    let mut w = Walker {
        b: data,
        i: 0,
        depth: 0,
    };
    let mut found = Found::default();
    w.ws();
    w.value(At::Top, &mut found)?;
    w.ws();
    (w.i == w.b.len()).then_some(found)
}

struct Walker<'a> {
    b: &'a [u8],
    i: usize,
    depth: u32,
}

/// What a value turned out to be, where the caller may keep it.
enum Scalar<'a> {
    Str(RawStr<'a>),
    Count(u64),
    /// A negative integer: `-0` is a count of 0 to the generic reader.
    Negative,
    Other,
}

impl<'a> Walker<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.i += 1)
    }

    fn value(&mut self, at: At, found: &mut Found<'a>) -> Option<Scalar<'a>> {
        match self.peek()? {
            b'{' => self.nested(|w| w.object(at, found)),
            b'[' => self.nested(|w| w.array(at, found)),
            b'"' => self.string().map(Scalar::Str),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            _ => self.number(),
        }
    }

    fn nested(&mut self, inner: impl FnOnce(&mut Self) -> Option<()>) -> Option<Scalar<'a>> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        inner(self)?;
        self.depth -= 1;
        Some(Scalar::Other)
    }

    fn object(&mut self, at: At, found: &mut Found<'a>) -> Option<()> {
        self.eat(b'{')?;
        self.ws();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            self.ws();
            let key = self.string()?;
            if key.escaped {
                // It might spell one of the keys that matter.
                return None;
            }
            self.ws();
            self.eat(b':')?;
            self.ws();
            match (at, key.raw()) {
                (At::Top, b"choices") => {
                    found.content = [None; 3];
                    self.value(At::Choices, found)?;
                }
                (At::Top, b"error") => {
                    // A server's error object: the generic reader reads it.
                    return None;
                }
                (At::Top, b"usage") => {
                    found.completion_tokens = None;
                    found.prompt_tokens = None;
                    self.value(At::Usage, found)?;
                }
                (At::Choices, _) => {
                    // `/choices/0` would name a key of this object: rare,
                    // and the generic reader's business.
                    return None;
                }
                (At::FirstChoice, b"delta") => {
                    found.content = [None; 3];
                    self.value(At::Delta, found)?;
                }
                (At::Delta, k @ (b"content" | b"reasoning_content" | b"reasoning")) => {
                    let slot = match k {
                        b"content" => 0,
                        b"reasoning_content" => 1,
                        _ => 2,
                    };
                    found.content[slot] = match self.value(At::Elsewhere, found)? {
                        Scalar::Str(s) => Some(s),
                        _ => None,
                    };
                }
                (At::Usage, k @ (b"completion_tokens" | b"prompt_tokens")) => {
                    let count = match self.value(At::Elsewhere, found)? {
                        Scalar::Count(n) => Some(n),
                        Scalar::Negative => return None,
                        _ => None,
                    };
                    if k == b"completion_tokens" {
                        found.completion_tokens = count;
                    } else {
                        found.prompt_tokens = count;
                    }
                }
                _ => {
                    self.value(At::Elsewhere, found)?;
                }
            }
            if self.after_item(b'}')? {
                return Some(());
            }
        }
    }

    fn array(&mut self, at: At, found: &mut Found<'a>) -> Option<()> {
        self.eat(b'[')?;
        self.ws();
        if self.eat(b']').is_some() {
            return Some(());
        }
        let mut first = true;
        loop {
            self.ws();
            let here = if at == At::Choices && first {
                At::FirstChoice
            } else {
                At::Elsewhere
            };
            first = false;
            self.value(here, found)?;
            if self.after_item(b']')? {
                return Some(());
            }
        }
    }

    /// After a member or element: true past the closing `close`, false past
    /// a comma, `None` on anything else.
    fn after_item(&mut self, close: u8) -> Option<bool> {
        self.ws();
        let b = self.peek()?;
        self.i += 1;
        match b {
            b',' => Some(false),
            _ if b == close => Some(true),
            _ => None,
        }
    }

    /// A string; the walker stands on its opening quote.
    fn string(&mut self) -> Option<RawStr<'a>> {
        let start = self.i;
        self.eat(b'"')?;
        let mut escaped = false;
        let mut ascii = true;
        loop {
            while !SPECIAL[usize::from(*self.b.get(self.i)?)] {
                self.i += 1;
            }
            match self.b[self.i] {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.i += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                        b'u' => {
                            let hex = self.b.get(self.i + 1..self.i + 5)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            let unit = hex.iter().fold(0u32, |n, &d| {
                                n * 16 + char::from(d).to_digit(16).unwrap_or(0)
                            });
                            if (0xD800..=0xDFFF).contains(&unit) {
                                return None;
                            }
                            self.i += 5;
                        }
                        _ => return None,
                    }
                }
                0..=0x1F => return None,
                _ => {
                    ascii = false;
                    self.i += 1;
                }
            }
        }
        self.i += 1;
        let quoted = &self.b[start..self.i];
        if !ascii {
            std::str::from_utf8(quoted).ok()?;
        }
        Some(RawStr { quoted, escaped })
    }

    fn literal(&mut self, word: &str) -> Option<Scalar<'a>> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word.as_bytes()).then(|| {
            self.i = end;
            Scalar::Other
        })
    }

    /// A number; a count is plain digits that fit a `u64`. A fraction or
    /// an exponent makes a float, never a count; a negative integer is left
    /// to the generic reader where a count is wanted.
    fn number(&mut self) -> Option<Scalar<'a>> {
        let start = self.i;
        let negative = self.eat(b'-').is_some();
        let digits = self.digits();
        if digits == 0 || (digits > 1 && self.b[self.i - digits] == b'0') {
            return None;
        }
        let mut plain = true;
        if self.eat(b'.').is_some() {
            plain = false;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            plain = false;
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        if negative && plain {
            return Some(Scalar::Negative);
        }
        if !plain {
            return Some(Scalar::Other);
        }
        // Digits past a u64 make a float in the generic reader.
        self.b[start..self.i]
            .iter()
            .try_fold(0u64, |n, &d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })
            .map(Scalar::Count)
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_chunk_is_read_without_escapes() {
        let f = walk(
            br#"{"id":"c1","object":"chat.completion.chunk","created":1712345678,"model":"m","choices":[{"index":0,"delta":{"content":"night "},"logprobs":null,"finish_reason":null}]}"#,
        )
        .expect("read");
        assert_eq!(
            f.content[0],
            Some(RawStr {
                quoted: b"\"night \"",
                escaped: false
            })
        );
        assert_eq!(f.content[1..], [None, None]);
    }

    #[test]
    fn later_duplicates_replace_earlier_values() {
        let f = walk(br#"{"choices":[{"delta":{"content":"a","content":7}}],"usage":{"prompt_tokens":3},"usage":{}}"#)
            .expect("read");
        assert_eq!(f.content[0], None);
        assert_eq!(f.prompt_tokens, None);
    }

    #[test]
    fn what_it_cannot_vouch_for_is_left_to_the_generic_reader() {
        for data in [
            r#"{"choi\u0063es":[]}"#,
            r#"{"choices":{"0":{"delta":{"content":"a"}}}}"#,
            r#"{"choices":[{"delta":{"content":"\ud83d\ude00"}}]}"#,
            r#"{"usage":{"completion_tokens":-0}}"#,
            r#"{"usage":{"completion_tokens":99999999999999999999}}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":"x"} x"#,
            "{\"a\":\"\u{1}\"}",
        ] {
            assert_eq!(walk(data.as_bytes()), None, "{data}");
        }
        let deep = format!("{}{}", "[".repeat(70), "]".repeat(70));
        assert_eq!(walk(deep.as_bytes()), None);
        assert_eq!(walk(b"{\"a\":\"\xff\"}"), None);
    }
}
