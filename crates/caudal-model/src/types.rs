//! Newtypes for the numbers Kafka's log and protocol give meaning to.
//!
//! Each wraps the wire representation (`i64`, `i32`, `i16`) so that an offset can never be passed
//! where a file position or an epoch is expected. Conversions are explicit (`.value()` / `From`).

use std::fmt;

macro_rules! newtype {
    ($(#[$meta:meta])* $name:ident($inner:ty)) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl $name {
            /// The raw value, as it travels on the wire.
            #[inline]
            pub const fn value(self) -> $inner {
                self.0
            }
        }

        impl From<$inner> for $name {
            #[inline]
            fn from(value: $inner) -> Self {
                Self(value)
            }
        }

        impl From<$name> for $inner {
            #[inline]
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

newtype!(
    /// A position in a partition's log: the offset of a record.
    Offset(i64)
);
newtype!(
    /// The epoch of a partition's leadership; bumped on every leader change.
    LeaderEpoch(i32)
);
newtype!(
    /// A broker or controller node id (`node.id`).
    NodeId(i32)
);
newtype!(
    /// The index of a partition within its topic.
    PartitionIndex(i32)
);
newtype!(
    /// A producer id allocated by InitProducerId.
    ProducerId(i64)
);
newtype!(
    /// The epoch of a producer id; bumped to fence older producer instances.
    ProducerEpoch(i16)
);
newtype!(
    /// A record's sequence number within one producer's stream to one partition.
    Sequence(i32)
);
newtype!(
    /// A byte position within one segment file.
    FilePosition(u32)
);
newtype!(
    /// Milliseconds since the Unix epoch, as Kafka timestamps are.
    TimestampMs(i64)
);

impl Offset {
    /// The offset after this one.
    #[inline]
    pub const fn next(self) -> Offset {
        Offset(self.0 + 1)
    }
}

impl LeaderEpoch {
    /// "No epoch known" on the wire.
    pub const UNKNOWN: LeaderEpoch = LeaderEpoch(-1);
}

impl ProducerId {
    /// A batch written without a producer id.
    pub const NONE: ProducerId = ProducerId(-1);
}

impl ProducerEpoch {
    /// A batch written without a producer epoch.
    pub const NONE: ProducerEpoch = ProducerEpoch(-1);
}

impl Sequence {
    /// A batch written without a sequence.
    pub const NONE: Sequence = Sequence(-1);

    /// The sequence `delta` after this one, wrapping at `i32::MAX` as Kafka does.
    #[inline]
    pub const fn wrapping_add(self, delta: i32) -> Sequence {
        let next = self.0 as i64 + delta as i64;
        if next > i32::MAX as i64 {
            Sequence((next - i32::MAX as i64 - 1) as i32)
        } else {
            Sequence(next as i32)
        }
    }
}

impl TimestampMs {
    /// "No timestamp" on the wire.
    pub const NONE: TimestampMs = TimestampMs(-1);
}

/// A topic name and partition index.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: PartitionIndex,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: impl Into<PartitionIndex>) -> Self {
        Self {
            topic: topic.into(),
            partition: partition.into(),
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_wraps_at_i32_max() {
        assert_eq!(Sequence(i32::MAX).wrapping_add(1), Sequence(0));
        assert_eq!(Sequence(i32::MAX - 1).wrapping_add(3), Sequence(1));
        assert_eq!(Sequence(5).wrapping_add(4), Sequence(9));
    }

    #[test]
    fn topic_partition_displays_like_its_directory() {
        assert_eq!(TopicPartition::new("orders", 3).to_string(), "orders-3");
    }
}
