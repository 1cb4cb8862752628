//! Pre-boot configuration store and the actions the API and config file drive.
