//! Which `__consumer_offsets` partition owns a group.

/// The `__consumer_offsets` partition of `group_id` among `partitions`, as Kafka computes it:
/// `Utils.abs(groupId.hashCode()) % partitions`, where `hashCode` is Java's `String.hashCode` over
/// UTF-16 code units and `Utils.abs(Integer.MIN_VALUE)` is 0.
///
/// `partitions` must be positive (`offsets.topic.num.partitions` is validated at startup); a
/// non-positive count yields partition 0.
pub fn partition_for_group(group_id: &str, partitions: i32) -> i32 {
    if partitions <= 0 {
        return 0;
    }
    let hash = java_string_hash(group_id);
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % partitions
}

/// Java's `String.hashCode`: `s[0]*31^(n-1) + ... + s[n-1]` over UTF-16 code units, wrapping.
pub fn java_string_hash(value: &str) -> i32 {
    value.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_vectors() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("Aa"), 2112);
        assert_eq!(java_string_hash("BB"), 2112);
        // The well-known string whose Java hash is Integer.MIN_VALUE.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        // A surrogate pair hashes as two UTF-16 code units (0xD83D, 0xDE00).
        assert_eq!(java_string_hash("😀"), 31 * 0xD83D + 0xDE00);
        assert_eq!(java_string_hash("hello world"), 1_794_106_052);
        assert_eq!(java_string_hash("my-group"), -1_906_497_762);
    }

    #[test]
    fn partition_vectors() {
        assert_eq!(partition_for_group("", 50), 0);
        assert_eq!(partition_for_group("hello", 50), 99_162_322 % 50);
        assert_eq!(partition_for_group("polygenelubricants", 50), 0);
        // Negative hashes use the absolute value.
        assert_eq!(partition_for_group("my-group", 50), 12);
        assert_eq!(partition_for_group("orders-consumer", 50), 40);
        assert_eq!(partition_for_group("group-1", 50), 49);
        assert_eq!(partition_for_group("x", 0), 0);
        for group in ["a", "g1", "orders", "😀"] {
            assert!((0..7).contains(&partition_for_group(group, 7)));
        }
    }
}
