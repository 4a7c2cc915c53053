//! The safe layer (`cuda-vmm`); see [`mapping`].

mod mapping;
