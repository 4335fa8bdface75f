//! The port-app-config model (to be written).
