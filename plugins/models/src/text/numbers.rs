//! Numbers spelt out in English, as transformers' `EnglishNumberNormalizer`
//! (SpeechT5's `normalize=True`) does it: "$12.50" becomes "twelve point
//! five zero dollars", "1,000" "one thousand", "25%" "twenty five percent".
//!
//! Python's regular expressions decide what a number is: `\d` is any
//! Unicode decimal digit and a number may not touch a word character
//! (`(?<!\w)` and `(?!\w)`); the matching below follows their backtracking
//! by hand, quirks included ("3.14159" keeps only two decimals, so it
//! reads "three.fourteen thousand one hundred and fifty nine").

const ONES: [&str; 10] = [
    "", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];
const TEENS: [&str; 10] = [
    "",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 10] = [
    "", "ten", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];
const THOUSANDS: [&str; 12] = [
    "",
    "thousand",
    "million",
    "billion",
    "trillion",
    "quadrillion",
    "quintillion",
    "sextillion",
    "septillion",
    "octillion",
    "nonillion",
    "decillion",
];

/// The currency symbols in the normalizer's dictionary order, with what
/// follows the number.
const CURRENCIES: [(char, &str); 19] = [
    ('$', " dollars"),
    ('€', " euros"),
    ('£', " pounds"),
    ('¢', " cents"),
    ('¥', " japanese yen"),
    ('﷼', " saudi riyal"),
    ('₹', " indian rupees"),
    ('₽', " russian rubles"),
    ('฿', " thai baht"),
    ('₺', " turkish liras"),
    ('₴', " ukrainian hryvnia"),
    ('₣', " swiss francs"),
    ('₡', " costa rican colon"),
    ('₱', " philippine peso"),
    ('₪', " israeli shekels"),
    ('₮', " mongolian tögrög"),
    ('₩', " south korean won"),
    ('₦', " nigerian naira"),
    ('₫', " vietnamese Đồng"),
];

/// The optional symbols of the number pattern, in the pattern's order.
const PATTERN_SYMBOLS: [char; 19] = [
    '$', '€', '£', '¢', '¥', '₹', '₽', '฿', '₺', '₴', '₣', '₡', '₱', '₪', '₮', '₩', '₦', '₫', '﷼',
];

/// The first code point of each run of ten Unicode decimal digits
/// (category Nd, Unicode 14), so that `\d` and `int()` read them as Python
/// does.
const DIGIT_ZEROS: [u32; 66] = [
    0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66, 0xDE6, 0xE50, 0xED0,
    0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620,
    0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10, 0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0,
    0x112F0, 0x11450, 0x114D0, 0x11650, 0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60,
    0x16AC0, 0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
];

/// The value of a Unicode decimal digit (Python's `\d`).
fn digit_value(c: char) -> Option<u32> {
    let c = c as u32;
    let i = DIGIT_ZEROS.partition_point(|&zero| zero <= c);
    let zero = *DIGIT_ZEROS.get(i.checked_sub(1)?)?;
    (c - zero < 10).then_some(c - zero)
}

fn is_digit(c: char) -> bool {
    digit_value(c).is_some()
}

/// Python's `\w` on str patterns: alphanumeric or the underscore.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `spell_number` for 1 ..= 999 (`n` is never 0 here).
fn spell_below_thousand(n: u32) -> String {
    let (hundreds, rest) = (n / 100, n % 100);
    let mut part = String::new();
    if hundreds > 0 {
        part.push_str(ONES[hundreds as usize]);
        part.push_str(" hundred");
        if rest > 0 {
            part.push_str(" and ");
        }
    }
    if rest > 10 && rest < 20 {
        part.push_str(TEENS[(rest - 10) as usize]);
    } else {
        let (tens, ones) = (TENS[(rest / 10) as usize], ONES[(rest % 10) as usize]);
        part.push_str(tens);
        if !ones.is_empty() {
            if !tens.is_empty() {
                part.push(' ');
            }
            part.push_str(ones);
        }
    }
    part
}

/// The value of up to three digits, as `int()` reads them; None when one
/// is not a digit (where Python raises).
fn chunk_value(chunk: &[char]) -> Option<u32> {
    chunk.iter().try_fold(0, |acc, &c| Some(acc * 10 + digit_value(c)?))
}

/// `convert`: one matched number spelt out; None where transformers raises
/// (a number with two currency symbols, or more than 36 digits).
fn convert(number: &[char]) -> Option<String> {
    let (mut integer, mut decimal): (Vec<char>, Vec<char>) = match number.iter().position(|&c| c == '.') {
        Some(dot) => (number[..dot].to_vec(), number[dot + 1..].to_vec()),
        None => (number.to_vec(), vec!['0', '0']),
    };
    let mut currency = "";
    for (symbol, name) in CURRENCIES {
        if integer.first() == Some(&symbol) {
            currency = name;
            integer.remove(0);
            break;
        }
        if integer.first() == Some(&'-') && integer.get(1) == Some(&symbol) {
            currency = name;
            integer.remove(1);
            break;
        }
    }
    let mut minus = "";
    if integer.first() == Some(&'-') {
        minus = "minus ";
        integer.remove(0);
    }
    let mut percent = "";
    if integer.contains(&'%') || decimal.contains(&'%') {
        percent = " percent";
        integer.retain(|&c| c != '%');
        decimal.retain(|&c| c != '%');
    }
    // zfill to whole groups of three.
    let width = 3 * ((integer.len().max(1) - 1) / 3 + 1);
    let mut padded = vec!['0'; width - integer.len()];
    padded.extend(&integer);
    let groups = padded.len() / 3;
    let mut parts = Vec::new();
    for (g, chunk) in padded.chunks(3).enumerate() {
        let value = chunk_value(chunk)?;
        if value > 0 {
            let mut part = spell_below_thousand(value);
            // Past the decillions transformers' table runs out (IndexError).
            let unit = THOUSANDS.get(groups - g - 1)?;
            if !unit.is_empty() {
                part.push(' ');
                part.push_str(unit);
            }
            parts.push(part);
        }
    }
    let integer = parts.join(" ");
    if decimal == ['0', '0'] {
        return Some(format!("{minus}{integer}{percent}{currency}"));
    }
    let decimal = decimal
        .iter()
        .map(|&c| {
            digit_value(c).map(|d| match d {
                0 => "zero".to_string(),
                d => spell_below_thousand(d),
            })
        })
        .collect::<Option<Vec<_>>>()?
        .join(" ");
    Some(format!("{minus}{integer} point {decimal}{percent}{currency}"))
}

/// Step one: the commas of `\d+,\d+` matches removed (non-overlapping,
/// left to right, so "1,000,000" becomes "1000,000").
fn drop_commas(text: &[char]) -> Vec<char> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let digits = text[i..].iter().take_while(|&&c| is_digit(c)).count();
        if digits > 0 && text.get(i + digits) == Some(&',') {
            let after = text[i + digits + 1..].iter().take_while(|&&c| is_digit(c)).count();
            if after > 0 {
                out.extend(&text[i..i + digits]);
                out.extend(&text[i + digits + 1..i + digits + 1 + after]);
                i += digits + 1 + after;
                continue;
            }
        }
        // A digit run that does not match leaves its first digit behind, as
        // the regex engine moves on by one.
        out.push(text[i]);
        i += 1;
    }
    out
}

/// The length of the number pattern's match at `start`, or None.
fn number_at(text: &[char], start: usize) -> Option<usize> {
    if start > 0 && is_word(text[start - 1]) {
        return None;
    }
    let mut i = start;
    if text.get(i) == Some(&'-') {
        i += 1;
    }
    for symbol in PATTERN_SYMBOLS {
        if text.get(i) == Some(&symbol) {
            i += 1;
        }
    }
    let digits = text[i.min(text.len())..].iter().take_while(|&&c| is_digit(c)).count();
    if digits == 0 {
        return None;
    }
    i += digits;
    // (?:\.\d{1,2})? tries two decimals, one, then none; %? with, then without.
    let mut ends = Vec::with_capacity(6);
    if text.get(i) == Some(&'.') {
        let decimals = text[i + 1..].iter().take(2).take_while(|&&c| is_digit(c)).count();
        for n in (1..=decimals).rev() {
            ends.push(i + 1 + n);
        }
    }
    ends.push(i);
    let followed = |end: usize| text.get(end).is_none_or(|&c| !is_word(c));
    for end in ends {
        if text.get(end) == Some(&'%') && followed(end + 1) {
            return Some(end + 1 - start);
        }
        if followed(end) {
            return Some(end - start);
        }
    }
    None
}

/// `EnglishNumberNormalizer()(text)`. Err names a number transformers
/// fails on.
pub fn normalize_numbers(text: &str) -> Result<String, String> {
    let chars = drop_commas(&text.chars().collect::<Vec<_>>());
    let mut out = String::with_capacity(text.len() * 2);
    let mut i = 0;
    while i < chars.len() {
        match number_at(&chars, i) {
            Some(len) => {
                let number = &chars[i..i + len];
                let spelt = convert(number).ok_or_else(|| {
                    format!(
                        "the number normalizer cannot spell \"{}\"",
                        number.iter().collect::<String>()
                    )
                })?;
                out.push_str(&spelt);
                i += len;
            }
            None => {
                out.push(chars[i]);
                i += 1;
            }
        }
    }
    // re.sub(" +", " ", ...)
    let mut collapsed = String::with_capacity(out.len());
    for c in out.chars() {
        if !(c == ' ' && collapsed.ends_with(' ')) {
            collapsed.push(c);
        }
    }
    Ok(collapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(text: &str) -> String {
        normalize_numbers(text).unwrap()
    }

    #[test]
    fn spells_integers_by_groups_of_three() {
        assert_eq!(n("10 11 19 20 21"), "ten eleven nineteen twenty twenty one");
        assert_eq!(
            n("101 110 999"),
            "one hundred and one one hundred and ten nine hundred and ninety nine"
        );
        assert_eq!(n("1001"), "one thousand one");
        assert_eq!(n("1000000"), "one million");
        assert_eq!(n("0 apples"), " apples");
    }

    #[test]
    fn follows_the_pattern_quirks() {
        assert_eq!(n("1,000,000"), "one thousand,");
        assert_eq!(n("3.14159"), "three.fourteen thousand one hundred and fifty nine");
        assert_eq!(n("a-5 5x x5"), "a-five 5x x5");
        assert_eq!(n("12%x"), "twelve%x");
    }

    #[test]
    fn currencies_signs_and_percent() {
        assert_eq!(n("-$5.50"), "minus five point five zero dollars");
        assert_eq!(n("$12.5%"), "twelve point five percent dollars");
        assert_eq!(n("£1.00"), "one pounds");
        assert_eq!(n("12%"), "twelve percent");
        assert!(normalize_numbers("$€5").is_err());
    }

    #[test]
    fn reads_unicode_digits() {
        assert_eq!(digit_value('٣'), Some(3));
        assert_eq!(digit_value('５'), Some(5));
        assert_eq!(digit_value('a'), None);
        assert_eq!(n("٣"), "three");
    }
}
