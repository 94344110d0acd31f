//! Result format codes as a Bind gives them, kept past the message: none (all
//! text), one for every column, or one per column. The first two, what drivers send,
//! are kept with no allocation (a Bind's formats are copied at every execution).

use super::Int16s;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultFormats {
    /// No code (all text), or one that applies to every column.
    All(Option<i16>),
    /// One per column.
    Each(Vec<i16>),
}

impl Default for ResultFormats {
    fn default() -> ResultFormats {
        ResultFormats::All(None)
    }
}

impl ResultFormats {
    pub fn from_slice(codes: &[i16]) -> ResultFormats {
        match codes {
            [] => ResultFormats::All(None),
            [one] => ResultFormats::All(Some(*one)),
            many => ResultFormats::Each(many.to_vec()),
        }
    }

    pub fn from_bind(codes: &Int16s<'_>) -> ResultFormats {
        match codes.len() {
            0 => ResultFormats::All(None),
            1 => ResultFormats::All(codes.get(0)),
            _ => ResultFormats::Each(codes.to_vec()),
        }
    }

    /// The codes as the Bind listed them.
    pub fn as_slice(&self) -> &[i16] {
        match self {
            ResultFormats::All(None) => &[],
            ResultFormats::All(Some(one)) => std::slice::from_ref(one),
            ResultFormats::Each(many) => many,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_codes_as_listed() {
        for codes in [&[][..], &[1], &[0], &[0, 1, 1]] {
            assert_eq!(ResultFormats::from_slice(codes).as_slice(), codes);
        }
        let body = [0u8, 2, 0, 1, 0, 0];
        let mut r = crate::protocol::reader::Reader::new(&body, "Bind");
        let codes = Int16s::read(&mut r).expect("two codes");
        assert_eq!(ResultFormats::from_bind(&codes).as_slice(), &[1, 0]);
        assert!(matches!(
            ResultFormats::from_slice(&[1]),
            ResultFormats::All(Some(1))
        ));
    }
}
