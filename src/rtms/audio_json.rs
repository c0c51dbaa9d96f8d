//! The audio message (msg 14) read without serde: fifty of them a second
//! per stream made the general JSON decoding one of the engine's largest
//! costs (matching every field name against the message union, then checking
//! the ~850-byte payload as text again).
//!
//! Only the plain shape Zoom sends is taken: an object of `msg_type` 14 and
//! a `content` object made of `data`, `timestamp`, `channel_id`, `user_id`
//! and `user_name`, each at most once, and of other fields serde would
//! ignore (`length`) with a string, integer or literal value; strings without
//! escapes, integers without fraction or exponent, any JSON whitespace.
//! Anything else (another top-level field, an escape, a float, a nested
//! value, a duplicate, broken JSON) returns `None` and
//! the caller decodes with serde as before. When this returns a frame it is
//! the one serde would have returned: a property test holds the two against
//! each other. Owns this one reading; never decides anything.

use std::borrow::Cow;

use super::protocol::{AudioFrame, msg};

/// The audio frame in `bytes`, when it has the plain shape (see the module
/// header); `None` means "ask serde".
pub fn audio(bytes: &[u8]) -> Option<AudioFrame<'_>> {
    let mut p = Reader { b: bytes, i: 0 };
    p.byte(b'{')?;
    let (mut msg_type, mut content) = (false, None);
    loop {
        match p.key()? {
            b"msg_type" if !msg_type => {
                if p.integer()? != i64::from(msg::MEDIA_DATA_AUDIO) {
                    return None;
                }
                msg_type = true;
            }
            b"content" if content.is_none() => content = Some(p.content()?),
            _ => return None,
        }
        if !p.more()? {
            break;
        }
    }
    p.skip_ws();
    if p.i != p.b.len() || !msg_type {
        return None;
    }
    content
}

/// An id as it came; made text only when the frame keeps it (a `user_id`
/// beside a `channel_id` is read and dropped without an allocation).
enum Id<'a> {
    Text(&'a str),
    Number(i64),
}

impl<'a> Id<'a> {
    fn into_text(self) -> Cow<'a, str> {
        match self {
            Id::Text(t) => Cow::Borrowed(t),
            Id::Number(n) => Cow::Owned(n.to_string()),
        }
    }
}

/// A position in the message; every method returns `None` on anything but
/// the plain shape.
struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn byte(&mut self, want: u8) -> Option<()> {
        self.skip_ws();
        (*self.b.get(self.i)? == want).then(|| self.i += 1)
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.b.get(self.i).copied()
    }

    /// After a member: `,` (true, another follows) or `}` (false).
    fn more(&mut self) -> Option<bool> {
        let b = self.peek()?;
        self.i += 1;
        match b {
            b',' => Some(true),
            b'}' => Some(false),
            _ => None,
        }
    }

    /// A member's name and its colon.
    fn key(&mut self) -> Option<&'a [u8]> {
        let key = self.raw_string()?;
        self.byte(b':')?;
        Some(key)
    }

    /// The bytes of a string without escapes or control characters.
    fn raw_string(&mut self) -> Option<&'a [u8]> {
        self.byte(b'"')?;
        let rest = &self.b[self.i..];
        let end = memchr::memchr2(b'"', b'\\', rest)?;
        let s = &rest[..end];
        // JSON strings may not hold control characters (serde refuses them).
        if rest[end] == b'\\' || s.iter().fold(false, |bad, &c| bad | (c < 0x20)) {
            return None;
        }
        self.i += end + 1;
        Some(s)
    }

    fn string(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.raw_string()?).ok()
    }

    /// An integer as JSON writes it: `-?(0|[1-9][0-9]*)`, at most 18 digits
    /// (so it fits), followed by neither a fraction nor an exponent.
    fn integer(&mut self) -> Option<i64> {
        self.skip_ws();
        let negative = self.b.get(self.i) == Some(&b'-');
        let start = self.i + usize::from(negative);
        let digits = self.b[start..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        let end = start + digits;
        let leading_zero = digits > 1 && self.b[start] == b'0';
        // "-0" is left to serde, which may read it as a float.
        let minus_zero = negative && digits == 1 && self.b[start] == b'0';
        if digits == 0 || digits > 18 || leading_zero || minus_zero {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = self.b.get(end) {
            return None;
        }
        let magnitude = self.b[start..end]
            .iter()
            .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
        self.i = end;
        Some(if negative { -magnitude } else { magnitude })
    }

    /// A channel or user id: a string, or an integer.
    fn id(&mut self) -> Option<Id<'a>> {
        match self.peek()? {
            b'"' => self.string().map(Id::Text),
            _ => self.integer().map(Id::Number),
        }
    }

    /// A value serde ignores (an unknown field's): a string, an integer,
    /// `true`, `false` or `null`; checked as strictly as one that is kept.
    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b't' | b'f' | b'n' => {
                let rest = &self.b[self.i..];
                let word = [&b"true"[..], b"false", b"null"]
                    .into_iter()
                    .find(|w| rest.starts_with(w))?;
                self.i += word.len();
                match self.b.get(self.i) {
                    Some(c) if c.is_ascii_alphanumeric() => None,
                    _ => Some(()),
                }
            }
            _ => self.integer().map(drop),
        }
    }

    fn content(&mut self) -> Option<AudioFrame<'a>> {
        self.byte(b'{')?;
        let mut data = None;
        let mut timestamp = None;
        let mut channel_id = None;
        let mut user_id = None;
        let mut user_name = None;
        loop {
            match self.key()? {
                b"data" if data.is_none() => data = Some(self.string()?),
                b"timestamp" if timestamp.is_none() => timestamp = Some(self.integer()?),
                b"channel_id" if channel_id.is_none() => channel_id = Some(self.id()?),
                b"user_id" if user_id.is_none() => user_id = Some(self.id()?),
                b"user_name" if user_name.is_none() => user_name = Some(self.id()?),
                b"data" | b"timestamp" | b"channel_id" | b"user_id" | b"user_name" => return None,
                _ => self.skip_value()?,
            }
            if !self.more()? {
                break;
            }
        }
        Some(AudioFrame {
            data: Cow::Borrowed(data?),
            timestamp: timestamp.unwrap_or(0),
            channel: channel_id
                .or(user_id)
                .map_or(Cow::Borrowed("0"), Id::into_text),
            user_name: user_name.map(Id::into_text),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::rtms::protocol::{Incoming, decode_with_serde};

    const ZOOM: &str = r#"{"msg_type":14,"content":{"user_id":0,"user_name":"Caller","data":"AAEC/w==","timestamp":1700000000123,"channel_id":"4c8f0a2e-caller"}}"#;

    fn serde_audio(bytes: &[u8]) -> Option<AudioFrame<'_>> {
        match decode_with_serde(bytes) {
            Ok(Incoming::Audio(a)) => Some(a),
            _ => None,
        }
    }

    #[test]
    fn the_shapes_zoom_and_the_simulator_send_take_the_fast_path() {
        let a = audio(ZOOM.as_bytes()).expect("plain shape");
        assert_eq!(a.data, "AAEC/w==");
        assert_eq!(a.timestamp, 1_700_000_000_123);
        assert_eq!(a.channel, "4c8f0a2e-caller");
        assert_eq!(a.user_name.as_deref(), Some("Caller"));
        assert!(
            matches!(a.data, Cow::Borrowed(_)),
            "the payload is not copied"
        );
        assert!(
            matches!(a.channel, Cow::Borrowed(_)),
            "the channel id is not copied either"
        );
        let sim = zoom_sim::protocol::audio_frame("QUJD", 42, "1", Some((16778240, "Agent")));
        let a = audio(sim.as_bytes()).expect("the simulator's frame, with its length");
        assert_eq!((a.timestamp, &*a.channel, &*a.data), (42, "1", "QUJD"));
        assert_eq!(a.user_name.as_deref(), Some("Agent"));
        let ignored = r#"{"msg_type":14,"content":{"data":"QQ==","length":1,"a":"é","b":true,"c":false,"d":null}}"#;
        assert!(audio(ignored.as_bytes()).is_some(), "fields serde ignores");
        let spaced = "{ \"msg_type\" : 14 ,\n\t\"content\" : { \"data\" : \"QQ==\" , \"user_id\" : -7 } }\r\n";
        let a = audio(spaced.as_bytes()).expect("whitespace is allowed");
        assert_eq!((&*a.channel, a.timestamp, a.user_name), ("-7", 0, None));
    }

    #[test]
    fn anything_else_is_left_to_serde() {
        for other in [
            r#"{"msg_type":12,"timestamp":1}"#,
            r#"{"msg_type":14,"content":{"data":"a\/b"}}"#,
            r#"{"msg_type":14,"content":{"data":"QQ==","timestamp":1.5}}"#,
            r#"{"msg_type":14,"content":{"data":"QQ==","timestamp":1e3}}"#,
            r#"{"msg_type":14,"content":{"data":"QQ==","timestamp":012}}"#,
            r#"{"msg_type":14,"content":{"data":"QQ==","user_id":-0}}"#,
            r#"{"msg_type":14,"content":{"data":"QQ==","timestamp":12345678901234567890}}"#,
            r#"{"msg_type":14,"content":{"data":"QQ==","extra":{}}}"#,
            r#"{"msg_type":14,"content":{"data":"QQ==","extra":[1]}}"#,
            r#"{"msg_type":14,"content":{"data":"QQ==","extra":nul}}"#,
            r#"{"msg_type":14,"content":{"data":"QQ==","extra":truex}}"#,
            r#"{"msg_type":14,"state":1,"content":{"data":"QQ=="}}"#,
            r#"{"msg_type":14,"content":{"data":"QQ==","data":"QQ=="}}"#,
            r#"{"msg_type":14,"msg_type":14,"content":{"data":"QQ=="}}"#,
            r#"{"msg_type":14,"content":{"data":7}}"#,
            r#"{"msg_type":14,"content":null}"#,
            r#"{"msg_type":14,"content":{"data":"QQ=="}} x"#,
            r#"{"msg_type":14,"content":{"data":"QQ=="},}"#,
            r#"{"msg_type":14,"content":{"data":"QQ=="}"#,
            "{\"msg_type\":14,\"content\":{\"data\":\"Q\u{1}Q==\"}}",
            r#"{"content":{"data":"QQ=="}}"#,
            r#"{}"#,
            "",
        ] {
            assert_eq!(audio(other.as_bytes()), None, "{other}");
        }
    }

    /// A member's value: mostly what the plain shape holds, sometimes what
    /// it does not.
    fn value(name: &'static str) -> BoxedStrategy<String> {
        let plain = match name {
            "data" | "channel_id" | "user_name" => "[A-Za-z0-9+/=é-]{0,12}"
                .prop_map(|s| format!("\"{s}\""))
                .boxed(),
            _ => (-99_999i64..99_999).prop_map(|n| n.to_string()).boxed(),
        };
        let odd = prop_oneof![
            "[ -~]{0,6}".prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            (0u8..=9).prop_map(|d| format!("0{d}")),
            Just("-0".to_owned()),
            Just("1.5".to_owned()),
            Just("2e3".to_owned()),
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("nul".to_owned()),
            Just("\"\\u00e9\"".to_owned()),
            Just("{}".to_owned()),
            Just("[]".to_owned()),
        ];
        prop_oneof![4 => plain, 1 => odd].boxed()
    }

    const NAMES: [&str; 7] = [
        "data",
        "timestamp",
        "channel_id",
        "user_id",
        "user_name",
        "length",
        "other",
    ];

    /// Members of `content`: a shuffled subset of the names, sometimes one
    /// twice, with values and optional spaces.
    fn content() -> impl Strategy<Value = String> {
        let names = (
            prop::sample::subsequence(NAMES.to_vec(), 1..=NAMES.len()).prop_shuffle(),
            prop::option::weighted(0.1, prop::sample::select(NAMES.to_vec())),
        )
            .prop_map(|(mut names, twice)| {
                names.extend(twice);
                names
            });
        names.prop_flat_map(|names| {
            names
                .into_iter()
                .map(|k| {
                    (value(k), " {0,1}").prop_map(move |(v, ws)| format!("\"{k}\"{ws}:{ws}{v}"))
                })
                .collect::<Vec<_>>()
                .prop_map(|members| members.join(","))
        })
    }

    fn message() -> impl Strategy<Value = String> {
        let msg_type =
            prop_oneof![6 => Just("14"), 1 => Just("14.0"), 1 => Just("13"), 1 => Just("014")];
        (
            msg_type,
            content(),
            any::<bool>(),
            prop::bool::weighted(0.1),
        )
            .prop_map(|(t, c, first, cut)| {
                let s = if first {
                    format!(r#"{{"msg_type":{t},"content":{{{c}}}}}"#)
                } else {
                    format!(r#"{{"content":{{{c}}}, "msg_type":{t}}}"#)
                };
                if cut { s[..s.len() - 1].to_owned() } else { s }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
        #[test]
        fn the_fast_path_never_disagrees_with_serde(m in message()) {
            if let Some(fast) = audio(m.as_bytes()) {
                prop_assert_eq!(Some(fast), serde_audio(m.as_bytes()), "{}", m);
            }
        }
    }
}
