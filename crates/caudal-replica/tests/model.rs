//! A model test: three replicas, a controller, and random produces, fetches (sent and answered
//! separately, so responses go stale), flushes, ISR changes, crashes, restarts, leader moves and
//! late metadata (zombie leaders). After every step:
//! - a leader's high watermark never decreases;
//! - every offset below the current leader's high watermark is on every member of the committed
//!   ISR, with the same epoch;
//! - every record acknowledged with acks=all, and every record ever below a recognised leader's
//!   high watermark, is in the log of every replica that becomes leader, at the same offset.
//!
//! With `caudal.acks.all.fsync` on, a crash loses everything not fsynced (a power failure); off,
//! a crash keeps the page cache (a process kill), as Kafka assumes.

mod support;

use std::collections::BTreeMap;

use caudal_model::{LeaderEpoch, NodeId, Offset, TimestampMs};
use caudal_replica::{
    EpochResponse, FetchResponse, FollowerAction, FollowerState, FollowerStep, IsrProposal,
    LeaderConfig, LeaderInit, LeaderState, LocalLog, PartitionEpoch, ProduceWaitId,
};
use proptest::prelude::*;
use support::{Answer, TestLog, deliver, serve};

const NODES: usize = 3;
const MIN_INSYNC_REPLICAS: usize = 2;
const LAG_MS: i64 = 1_000;
const WAIT_MS: i64 = 5_000;

#[derive(Debug, Clone)]
enum Op {
    /// `node == NODES`: to the node the controller names leader.
    Produce {
        node: usize,
        acks_all: bool,
    },
    /// One fetcher iteration on a node: maybe fsync, answer the response in flight, send the next.
    Round {
        node: usize,
        flush: bool,
    },
    Flush {
        node: usize,
    },
    Send {
        node: usize,
    },
    Deliver {
        node: usize,
    },
    Tick {
        node: usize,
        elapsed_ms: i64,
    },
    ResolveAlterPartition {
        accept_if_valid: bool,
    },
    /// `fenced`: the controller notices (the broker's session expires) and removes it from the
    /// ISR; otherwise it restarts within its session and stays in the ISR (a leader always loses
    /// its leadership).
    Crash {
        node: usize,
        fenced: bool,
    },
    Restart {
        node: usize,
    },
    Learn {
        node: usize,
    },
    MoveLeader {
        node: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let node = 0..NODES;
    prop_oneof![
        6 => (0..NODES + 1, prop::bool::weighted(0.8))
            .prop_map(|(node, acks_all)| Op::Produce { node, acks_all }),
        12 => (node.clone(), prop::bool::weighted(0.7)).prop_map(|(node, flush)| Op::Round { node, flush }),
        2 => node.clone().prop_map(|node| Op::Flush { node }),
        3 => node.clone().prop_map(|node| Op::Send { node }),
        3 => node.clone().prop_map(|node| Op::Deliver { node }),
        2 => (node.clone(), 1..1_500i64).prop_map(|(node, elapsed_ms)| Op::Tick { node, elapsed_ms }),
        4 => prop::bool::weighted(0.9).prop_map(|accept_if_valid| Op::ResolveAlterPartition { accept_if_valid }),
        2 => (node.clone(), any::<bool>()).prop_map(|(node, fenced)| Op::Crash { node, fenced }),
        2 => node.clone().prop_map(|node| Op::Restart { node }),
        6 => node.clone().prop_map(|node| Op::Learn { node }),
        1 => node.prop_map(|node| Op::MoveLeader { node }),
    ]
}

enum Role {
    None,
    Leader(Box<LeaderState>),
    Follower(FollowerState),
}

struct Node {
    up: bool,
    log: TestLog,
    /// The high watermark checkpoint, for a restart.
    high_watermark: Offset,
    role: Role,
    in_flight: Option<Answer>,
}

struct Controller {
    leader: Option<usize>,
    leader_epoch: i32,
    partition_epoch: i32,
    isr: Vec<usize>,
    pending: Vec<(usize, IsrProposal)>,
}

struct Sim {
    fsync: bool,
    truncate_on_fetch: bool,
    now: i64,
    nodes: Vec<Node>,
    controller: Controller,
    next_wait: u64,
    /// Waiting acks=all produces: id → (leader node, offset, epoch).
    waits: BTreeMap<ProduceWaitId, (usize, i64, i32)>,
    /// Acknowledged acks=all records: (offset, epoch).
    acked: Vec<(i64, i32)>,
    /// Records below the high watermark of a leader the controller recognised: offset → epoch.
    committed: BTreeMap<i64, i32>,
    /// The highest high watermark seen per (node, leader epoch).
    high_watermarks: BTreeMap<(usize, i32), Offset>,
}

fn id(node: usize) -> NodeId {
    NodeId(node as i32 + 1)
}

fn index(node: NodeId) -> usize {
    node.value() as usize - 1
}

impl Sim {
    fn new(fsync: bool, truncate_on_fetch: bool) -> Sim {
        let nodes = (0..NODES)
            .map(|_| Node {
                up: true,
                log: TestLog::default(),
                high_watermark: Offset(0),
                role: Role::None,
                in_flight: None,
            })
            .collect();
        let mut sim = Sim {
            fsync,
            truncate_on_fetch,
            now: 0,
            nodes,
            controller: Controller {
                leader: Some(0),
                leader_epoch: 1,
                partition_epoch: 1,
                isr: (0..NODES).collect(),
                pending: Vec::new(),
            },
            next_wait: 0,
            waits: BTreeMap::new(),
            acked: Vec::new(),
            committed: BTreeMap::new(),
            high_watermarks: BTreeMap::new(),
        };
        for node in 0..NODES {
            sim.learn(node);
        }
        sim
    }

    fn now(&self) -> TimestampMs {
        TimestampMs(self.now)
    }

    fn fail_waits_of(&mut self, node: usize) {
        self.waits.retain(|_, (leader, _, _)| *leader != node);
    }

    fn complete_waits(&mut self, node: usize) {
        let Role::Leader(leader) = &mut self.nodes[node].role else {
            return;
        };
        let now = TimestampMs(self.now);
        let mut done = leader.ready_waits();
        done.extend(
            leader
                .expired_waits(now)
                .into_iter()
                .map(|(id, error)| (id, Err(error))),
        );
        for (wait, outcome) in done {
            let (_, offset, epoch) = self.waits.remove(&wait).expect("a registered wait");
            if outcome.is_ok() {
                assert_eq!(
                    self.nodes[node].log.records.get(offset as usize),
                    Some(&epoch),
                    "an acknowledged record is in the leader's log"
                );
                self.acked.push((offset, epoch));
            }
        }
    }

    fn learn(&mut self, node: usize) {
        if !self.nodes[node].up {
            return;
        }
        let now = self.now();
        let epoch = self.controller.leader_epoch;
        let isr: Vec<NodeId> = self.controller.isr.iter().map(|n| id(*n)).collect();
        let partition_epoch = PartitionEpoch(self.controller.partition_epoch);
        match self.controller.leader {
            Some(leader) if leader == node => {
                if let Role::Leader(state) = &mut self.nodes[node].role
                    && state.leader_epoch() == LeaderEpoch(epoch)
                {
                    state.on_isr_committed(isr, partition_epoch, now);
                    self.complete_waits(node);
                    return;
                }
                self.step_down(node);
                let this = &mut self.nodes[node];
                for (offset, record_epoch) in &self.acked {
                    assert_eq!(
                        this.log.records.get(*offset as usize),
                        Some(record_epoch),
                        "a new leader from the ISR has every acknowledged record (offset {offset})"
                    );
                }
                for (offset, record_epoch) in &self.committed {
                    assert_eq!(
                        this.log.records.get(*offset as usize),
                        Some(record_epoch),
                        "a new leader from the ISR has every committed record (offset {offset})"
                    );
                }
                let end = this.log.log_end_offset();
                this.log.assign_epoch(epoch, end.value());
                let high_watermark = match &this.role {
                    Role::Follower(follower) => follower.high_watermark(),
                    _ => this.high_watermark,
                };
                this.in_flight = None;
                this.role = Role::Leader(Box::new(LeaderState::new(
                    LeaderInit {
                        local: id(node),
                        leader_epoch: LeaderEpoch(epoch),
                        partition_epoch,
                        replicas: (0..NODES).map(id).collect(),
                        isr,
                        log_start_offset: Offset(0),
                        log_end_offset: end,
                        durable_offset: Offset(this.log.durable),
                        high_watermark,
                    },
                    LeaderConfig {
                        acks_all_fsync: self.fsync,
                        replica_lag_time_max_ms: LAG_MS,
                        min_insync_replicas: MIN_INSYNC_REPLICAS,
                    },
                    now,
                )));
            }
            Some(leader) => {
                let latest = self.nodes[node].log.latest_epoch();
                if let Role::Follower(follower) = &mut self.nodes[node].role {
                    follower.on_leader_change(id(leader), LeaderEpoch(epoch), latest);
                    return;
                }
                if let Role::Leader(state) = &self.nodes[node].role
                    && state.leader_epoch() >= LeaderEpoch(epoch)
                {
                    return;
                }
                let high_watermark = self.step_down(node);
                let this = &mut self.nodes[node];
                this.role = Role::Follower(FollowerState::new(
                    id(leader),
                    LeaderEpoch(epoch),
                    LocalLog {
                        log_start_offset: Offset(0),
                        log_end_offset: this.log.log_end_offset(),
                        durable_offset: Offset(this.log.durable),
                        high_watermark,
                        latest_epoch: this.log.latest_epoch(),
                    },
                    self.truncate_on_fetch,
                ));
            }
            None => {}
        }
    }

    /// Leaves any leadership (failing its waits); returns the high watermark to carry over.
    fn step_down(&mut self, node: usize) -> Offset {
        let role = std::mem::replace(&mut self.nodes[node].role, Role::None);
        let high_watermark = match role {
            Role::Leader(state) => {
                let high_watermark = state.high_watermark();
                for (wait, _) in state.resign() {
                    self.waits.remove(&wait);
                }
                high_watermark
            }
            Role::Follower(follower) => follower.high_watermark(),
            Role::None => self.nodes[node].high_watermark,
        };
        self.fail_waits_of(node);
        self.nodes[node].high_watermark = high_watermark;
        high_watermark
    }

    fn apply(&mut self, op: &Op) {
        let now = self.now();
        match *op {
            Op::Produce { node, acks_all } => {
                let node = if node == NODES {
                    match self.controller.leader {
                        Some(leader) => leader,
                        None => return,
                    }
                } else {
                    node
                };
                let this = &mut self.nodes[node];
                let (true, Role::Leader(leader)) = (this.up, &mut this.role) else {
                    return;
                };
                if acks_all && leader.can_append_acks_all(MIN_INSYNC_REPLICAS).is_err() {
                    return;
                }
                let epoch = leader.leader_epoch().value();
                let offset = this.log.append(epoch);
                leader.on_append(this.log.log_end_offset(), now);
                if acks_all {
                    let wait = ProduceWaitId(self.next_wait);
                    self.next_wait += 1;
                    leader.register_produce_wait(
                        wait,
                        offset,
                        MIN_INSYNC_REPLICAS,
                        TimestampMs(self.now + WAIT_MS),
                    );
                    self.waits.insert(wait, (node, offset.value(), epoch));
                }
                self.complete_waits(node);
            }
            Op::Flush { node } => {
                let this = &mut self.nodes[node];
                if !this.up {
                    return;
                }
                let durable = this.log.flush();
                match &mut this.role {
                    Role::Leader(leader) => {
                        leader.on_local_flush(durable, now);
                    }
                    Role::Follower(follower) => follower.on_flushed(durable),
                    Role::None => {}
                }
                self.complete_waits(node);
            }
            Op::Round { node, flush } => {
                if flush {
                    self.apply(&Op::Flush { node });
                }
                self.deliver(node);
                self.send(node);
            }
            Op::Send { node } => self.send(node),
            Op::Deliver { node } => self.deliver(node),
            Op::Tick { node, elapsed_ms } => {
                self.now += elapsed_ms;
                let now = self.now();
                let this = &mut self.nodes[node];
                if let (true, Role::Leader(leader)) = (this.up, &mut this.role)
                    && let Some(proposal) = leader.maybe_shrink_isr(now)
                {
                    self.controller.pending.push((node, proposal));
                }
                self.complete_waits(node);
            }
            Op::ResolveAlterPartition { accept_if_valid } => {
                if self.controller.pending.is_empty() {
                    return;
                }
                let (node, proposal) = self.controller.pending.remove(0);
                let controller = &mut self.controller;
                let new_isr: Vec<usize> = proposal.new_isr.iter().map(|n| index(*n)).collect();
                let valid = controller.leader == Some(node)
                    && proposal.leader_epoch == LeaderEpoch(controller.leader_epoch)
                    && proposal.partition_epoch == PartitionEpoch(controller.partition_epoch)
                    && new_isr.contains(&node)
                    && new_isr.iter().all(|member| self.nodes[*member].up);
                let this = &mut self.nodes[node];
                if valid && accept_if_valid {
                    controller.isr = new_isr;
                    controller.partition_epoch += 1;
                    if let (true, Role::Leader(leader)) = (this.up, &mut this.role) {
                        leader.on_isr_committed(
                            proposal.new_isr,
                            PartitionEpoch(controller.partition_epoch),
                            now,
                        );
                    }
                } else if let (true, Role::Leader(leader)) = (this.up, &mut this.role) {
                    leader.on_isr_rejected(&proposal);
                }
                self.complete_waits(node);
            }
            Op::Crash { node, fenced } => {
                if !self.nodes[node].up {
                    return;
                }
                self.step_down(node);
                let this = &mut self.nodes[node];
                this.up = false;
                this.in_flight = None;
                if self.fsync {
                    this.log.crash();
                } else {
                    this.log.flush();
                }
                this.high_watermark = this.high_watermark.min(this.log.log_end_offset());
                let controller = &mut self.controller;
                let was_leader = controller.leader == Some(node);
                if (fenced || was_leader)
                    && controller.isr.contains(&node)
                    && controller.isr.len() > 1
                {
                    controller.isr.retain(|member| *member != node);
                    controller.partition_epoch += 1;
                }
                if controller.leader == Some(node) {
                    let candidate = controller
                        .isr
                        .iter()
                        .copied()
                        .find(|member| *member != node && self.nodes[*member].up);
                    controller.leader = candidate;
                    controller.leader_epoch += 1;
                    controller.partition_epoch += 1;
                }
            }
            Op::Restart { node } => {
                if self.nodes[node].up {
                    return;
                }
                self.nodes[node].up = true;
                let controller = &mut self.controller;
                if controller.leader.is_none() && controller.isr.contains(&node) {
                    controller.leader = Some(node);
                    controller.leader_epoch += 1;
                    controller.partition_epoch += 1;
                }
            }
            Op::Learn { node } => self.learn(node),
            Op::MoveLeader { node } => {
                let controller = &mut self.controller;
                if self.nodes[node].up
                    && controller.isr.contains(&node)
                    && controller.leader != Some(node)
                {
                    controller.leader = Some(node);
                    controller.leader_epoch += 1;
                    controller.partition_epoch += 1;
                }
            }
        }
    }

    fn send(&mut self, node: usize) {
        let now = self.now();
        let this = &mut self.nodes[node];
        if !this.up || this.in_flight.is_some() {
            return;
        }
        let Role::Follower(follower) = &mut this.role else {
            return;
        };
        let step = follower.next_step(this.log.latest_epoch());
        if let FollowerStep::TruncateTo(offset) = step {
            this.log.truncate_to(offset);
            assert_eq!(follower.log_end_offset(), this.log.log_end_offset());
            return;
        }
        let target = index(follower.leader());
        let leader_node = &mut self.nodes[target];
        if !leader_node.up {
            return;
        }
        let answer = match &mut leader_node.role {
            Role::Leader(leader) => {
                let (answer, proposal) = serve(step, id(node), leader, &leader_node.log, now);
                if let Some(proposal) = proposal {
                    self.controller.pending.push((target, proposal));
                }
                answer
            }
            _ => not_leader(step),
        };
        self.complete_waits(target);
        self.nodes[node].in_flight = Some(answer);
    }

    fn deliver(&mut self, node: usize) {
        let log_end_offsets: Vec<Offset> = self
            .nodes
            .iter()
            .map(|other| other.log.log_end_offset())
            .collect();
        let this = &mut self.nodes[node];
        if !this.up {
            return;
        }
        let Some(answer) = this.in_flight.take() else {
            return;
        };
        let Role::Follower(follower) = &mut this.role else {
            return;
        };
        let action = deliver(&answer, follower, &mut this.log);
        if action == FollowerAction::ResolveOutOfRange {
            let leader_end = log_end_offsets[index(follower.leader())];
            if let FollowerAction::TruncateTo(offset) =
                follower.on_leader_log_offsets(Offset(0), leader_end)
            {
                this.log.truncate_to(offset);
            }
        }
    }

    fn check(&mut self) {
        for (node, this) in self.nodes.iter().enumerate() {
            if let (true, Role::Leader(leader)) = (this.up, &this.role) {
                let key = (node, leader.leader_epoch().value());
                let high_watermark = leader.high_watermark();
                assert!(high_watermark <= leader.log_end_offset());
                let seen = self.high_watermarks.entry(key).or_insert(high_watermark);
                assert!(
                    high_watermark >= *seen,
                    "node {node}'s high watermark went back from {seen} to {high_watermark}"
                );
                *seen = high_watermark;
            }
        }
        let Some(leader) = self.controller.leader else {
            return;
        };
        let Role::Leader(state) = &self.nodes[leader].role else {
            return;
        };
        if state.leader_epoch() != LeaderEpoch(self.controller.leader_epoch) {
            return;
        }
        let high_watermark = state.high_watermark().value() as usize;
        let committed = &self.nodes[leader].log.records[..high_watermark];
        for member in &self.controller.isr {
            let records = &self.nodes[*member].log.records;
            assert!(
                records.len() >= high_watermark && &records[..high_watermark] == committed,
                "ISR member {member} lacks records below the high watermark {high_watermark}: \
                 {records:?} vs leader {leader} {committed:?}"
            );
        }
        for (offset, epoch) in &self.acked {
            assert_eq!(
                self.nodes[leader].log.records.get(*offset as usize),
                Some(epoch),
                "the leader keeps acknowledged record {offset}"
            );
        }
        for (offset, epoch) in committed.iter().enumerate() {
            let previous = self.committed.insert(offset as i64, *epoch);
            assert!(
                previous.is_none_or(|previous| previous == *epoch),
                "offset {offset} was committed in epoch {previous:?}, now in epoch {epoch}"
            );
        }
    }
}

fn not_leader(step: FollowerStep) -> Answer {
    let code = caudal_replica::ErrorCode::NotLeaderOrFollower.code();
    match step {
        FollowerStep::SendFetch(request) => Answer::Fetch(
            request,
            FetchResponse {
                error_code: code,
                high_watermark: Offset(-1),
                log_start_offset: Offset(-1),
                diverging_epoch: None,
                records: None,
            },
            Vec::new(),
        ),
        FollowerStep::SendEpochRequest(request) => Answer::Epoch(
            request,
            EpochResponse {
                error_code: code,
                leader_epoch: LeaderEpoch::UNKNOWN,
                end_offset: Offset(-1),
            },
        ),
        FollowerStep::TruncateTo(offset) => Answer::Local(offset),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn replication_keeps_acknowledged_records(
        fsync in any::<bool>(),
        truncate_on_fetch in any::<bool>(),
        ops in prop::collection::vec(op(), 1..400),
    ) {
        let mut sim = Sim::new(fsync, truncate_on_fetch);
        for op in &ops {
            sim.apply(op);
            sim.check();
        }
    }
}

/// The model is not vacuous: a steady run acknowledges records and keeps every replica in sync.
#[test]
fn a_steady_run_acknowledges_and_replicates() {
    let mut sim = Sim::new(true, true);
    for round in 0..50 {
        sim.apply(&Op::Produce {
            node: 0,
            acks_all: true,
        });
        for node in 0..NODES {
            sim.apply(&Op::Flush { node });
            sim.apply(&Op::Send { node });
            sim.apply(&Op::Deliver { node });
        }
        sim.apply(&Op::Tick {
            node: 0,
            elapsed_ms: 10,
        });
        sim.check();
        if round == 25 {
            // The leader dies; node 1 or 2 takes over with every acknowledged record.
            sim.apply(&Op::Crash {
                node: 0,
                fenced: true,
            });
            for node in 0..NODES {
                sim.apply(&Op::Learn { node });
            }
            sim.check();
        }
    }
    assert!(sim.acked.len() > 20, "acknowledged: {}", sim.acked.len());
    let leader = sim.controller.leader.expect("a leader");
    assert_ne!(leader, 0);
}
