//! The small requirement language of flavor extra specs matched against aggregate
//! metadata (Nova's extra-specs operators): `<op> operand`, `<or> a <or> b`, or a plain
//! string compared for equality.
//!
//! Numeric operators (`=` means "at least", `==`, `!=`, `>=`, `<=`) compare as numbers;
//! `s==`, `s!=`, `s<`, `s<=`, `s>`, `s>=` compare as strings; `<in>` is "contains" and
//! `<all-in>` "contains every word". Anything that does not start with an operator is a
//! plain value compared whole.

/// Whether the host-side `value` satisfies `requirement`. A malformed requirement (a
/// numeric operator on a non-number, an operator without operand) matches nothing.
pub fn requirement_matches(value: &str, requirement: &str) -> bool {
    let mut words = requirement.split_whitespace();
    let Some(op) = words.next() else {
        return value == requirement;
    };
    let operands: Vec<&str> = words.collect();
    if op == "<or>" {
        // Operands alternate value, "<or>", value, ...
        return operands.iter().step_by(2).any(|choice| *choice == value);
    }
    let Some(compare) = operator(op) else {
        return value == requirement;
    };
    match compare {
        Operator::AllIn => !operands.is_empty() && operands.iter().all(|w| value.contains(w)),
        _ => operands
            .first()
            .is_some_and(|operand| compare.apply(value, operand)),
    }
}

#[derive(Debug, Clone, Copy)]
enum Operator {
    AtLeast,
    NumEq,
    NumNe,
    NumGe,
    NumLe,
    StrEq,
    StrNe,
    StrLt,
    StrLe,
    StrGt,
    StrGe,
    In,
    AllIn,
}

fn operator(word: &str) -> Option<Operator> {
    Some(match word {
        "=" => Operator::AtLeast,
        "==" => Operator::NumEq,
        "!=" => Operator::NumNe,
        ">=" => Operator::NumGe,
        "<=" => Operator::NumLe,
        "s==" => Operator::StrEq,
        "s!=" => Operator::StrNe,
        "s<" => Operator::StrLt,
        "s<=" => Operator::StrLe,
        "s>" => Operator::StrGt,
        "s>=" => Operator::StrGe,
        "<in>" => Operator::In,
        "<all-in>" => Operator::AllIn,
        _ => return None,
    })
}

impl Operator {
    fn apply(self, value: &str, operand: &str) -> bool {
        let numbers = || {
            Some((
                value.trim().parse::<f64>().ok()?,
                operand.parse::<f64>().ok()?,
            ))
        };
        match self {
            Operator::AtLeast | Operator::NumGe => numbers().is_some_and(|(v, o)| v >= o),
            Operator::NumEq => numbers().is_some_and(|(v, o)| v == o),
            Operator::NumNe => numbers().is_some_and(|(v, o)| v != o),
            Operator::NumLe => numbers().is_some_and(|(v, o)| v <= o),
            Operator::StrEq => value == operand,
            Operator::StrNe => value != operand,
            Operator::StrLt => value < operand,
            Operator::StrLe => value <= operand,
            Operator::StrGt => value > operand,
            Operator::StrGe => value >= operand,
            Operator::In => value.contains(operand),
            Operator::AllIn => value.contains(operand),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::requirement_matches as m;

    #[test]
    fn plain_values_compare_whole() {
        assert!(m("true", "true"));
        assert!(!m("True", "true"));
        assert!(m("fast disk", "fast disk"));
        assert!(m("", ""));
    }

    #[test]
    fn or_lists_any_choice() {
        assert!(m("gold", "<or> silver <or> gold"));
        assert!(m("silver", "<or> silver"));
        assert!(!m("bronze", "<or> silver <or> gold"));
        // The keyword itself is never a choice.
        assert!(!m("<or>", "<or> a <or> b"));
    }

    #[test]
    fn numeric_operators() {
        assert!(m("8", "= 4"));
        assert!(!m("2", "= 4"));
        assert!(m("4", "== 4.0"));
        assert!(m("3", "!= 4"));
        assert!(m("4", ">= 4"));
        assert!(m("4", "<= 4"));
        assert!(!m("lots", ">= 4"));
        assert!(!m("8", ">="));
    }

    #[test]
    fn string_and_containment_operators() {
        assert!(m("abc", "s== abc"));
        assert!(m("abc", "s!= abd"));
        assert!(m("abc", "s< abd"));
        assert!(m("abc", "s>= abc"));
        assert!(m("sse avx2 aes", "<in> avx2"));
        assert!(!m("sse aes", "<in> avx2"));
        assert!(m("sse avx2 aes", "<all-in> aes sse"));
        assert!(!m("sse avx2", "<all-in> aes sse"));
        assert!(!m("sse", "<all-in>"));
    }
}
