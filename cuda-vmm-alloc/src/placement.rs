//! Which devices the chunks of a buffer or sparse array live on.

use cuda_vmm::{AllocationProps, Device, GranularityKind, Location};

use crate::error::{Error, Result};
use crate::pool::same_device;

/// Where a [`GrowableBuffer`](crate::GrowableBuffer) or [`SparseArray`](crate::SparseArray)
/// places its physical chunks. The structure's address range, copies and ordering stay with
/// its own device (the one passed to `new`); chunks may live on any device of the same
/// driver.
///
/// Every device chunks are placed on is granted the same access as the owner, over the
/// whole structure and in the same single `cuMemSetAccess` per committed run, so a kernel on
/// any of them can use all of it, and unmapping waits for work on each of them. The
/// allocation granularity is the largest over the owner and the placement devices.
///
/// Host memory (properties at [`Location::Host`] or [`Location::HostNuma`]) has one home,
/// the host: it takes [`Placement::Owner`], its chunks are created through the owner and
/// mapped with the owner's access like device memory. [`On`](Placement::On) and
/// [`RoundRobin`](Placement::RoundRobin) name devices to put chunks on, which host memory
/// is not, so they are refused for it ([`Error::InvalidConfig`]).
#[derive(Clone, Debug, Default)]
pub enum Placement {
    /// On the structure's own device (the default).
    #[default]
    Owner,
    /// Every chunk on this device.
    On(Device),
    /// Chunk `k`, counted in commit order, on `devices[k % devices.len()]`: memory striped
    /// across GPUs behind one pointer. A failed growth, commit or shrink takes no turn (the
    /// rotation is as before the call), and prefetched chunks are placed by the same rotation.
    RoundRobin(Vec<Device>),
}

/// The resolved placement: each home device with the properties its chunks are created with.
#[derive(Clone)]
pub(crate) struct Homes {
    homes: Vec<(Device, AllocationProps)>,
    next: usize,
}

impl Homes {
    /// Resolves `placement` for a structure of `owner` whose chunks have `props` (located on
    /// the owner). Refuses an empty list, devices of another driver, and properties that
    /// are not located on a device (host memory has one home).
    pub(crate) fn new(
        owner: &Device,
        props: &AllocationProps,
        placement: &Placement,
    ) -> Result<Homes> {
        let devices: Vec<Device> = match placement {
            Placement::Owner => return Ok(Homes::single(owner, props)),
            Placement::On(d) => vec![d.clone()],
            Placement::RoundRobin(list) if list.is_empty() => {
                return Err(Error::InvalidConfig {
                    message: "Placement::RoundRobin with an empty device list: name at least \
                              one device"
                        .into(),
                })
            }
            Placement::RoundRobin(list) => list.clone(),
        };
        if !matches!(props.location(), Location::Device(_)) {
            return Err(Error::InvalidConfig {
                message: format!(
                    "placement on devices needs device memory, but the properties place it \
                     at {:?}: host memory has one home, so it takes Placement::Owner",
                    props.location()
                ),
            });
        }
        for d in &devices {
            if !std::ptr::eq(d.cuda().sys(), owner.cuda().sys()) {
                return Err(Error::InvalidConfig {
                    message: format!(
                        "placement device {} belongs to another driver than the owner, \
                         device {}",
                        d.ordinal(),
                        owner.ordinal()
                    ),
                });
            }
        }
        let homes = devices
            .into_iter()
            .map(|d| {
                let p = props.clone().at(Location::Device(d.ordinal()));
                (d, p)
            })
            .collect();
        Ok(Homes { homes, next: 0 })
    }

    fn single(owner: &Device, props: &AllocationProps) -> Homes {
        Homes {
            homes: vec![(owner.clone(), props.clone())],
            next: 0,
        }
    }

    /// The largest allocation granularity of `kind` over the homes and `owner` (whose
    /// properties are `props`).
    pub(crate) fn granularity(
        &self,
        owner: &Device,
        props: &AllocationProps,
        kind: GranularityKind,
    ) -> Result<usize> {
        let mut g = owner.granularity(props, kind)?;
        for (d, p) in &self.homes {
            g = g.max(d.granularity(p, kind)?);
        }
        Ok(g)
    }

    /// The distinct home devices other than `owner`: they get access like the owner.
    pub(crate) fn peers(&self, owner: &Device) -> Vec<Device> {
        let mut peers: Vec<Device> = Vec::new();
        for (d, _) in &self.homes {
            if !same_device(d, owner) && !peers.iter().any(|p| same_device(p, d)) {
                peers.push(d.clone());
            }
        }
        peers
    }

    /// The one home device, if all chunks live on one device.
    pub(crate) fn only(&self) -> Option<&Device> {
        let (first, _) = self.homes.first()?;
        self.homes
            .iter()
            .all(|(d, _)| same_device(d, first))
            .then_some(first)
    }

    /// The home of the `k`-th chunk from now on.
    pub(crate) fn home(&self, k: usize) -> &(Device, AllocationProps) {
        &self.homes[(self.next + k) % self.homes.len()]
    }

    /// Whether the round-robin stands at `turn` (a position counted without wrapping, as
    /// [`position`](Self::position) plus chunks since).
    pub(crate) fn is_at(&self, turn: usize) -> bool {
        turn % self.homes.len() == self.next
    }

    /// Moves the round-robin past `n` chunks that were committed.
    pub(crate) fn advance(&mut self, n: usize) {
        self.next = (self.next + n) % self.homes.len();
    }

    /// Where the round-robin stands (for [`set_position`](Self::set_position)).
    pub(crate) fn position(&self) -> usize {
        self.next
    }

    /// Puts the round-robin back where [`position`](Self::position) saw it, after chunks
    /// obtained since were given back.
    pub(crate) fn set_position(&mut self, next: usize) {
        self.next = next % self.homes.len();
    }
}
