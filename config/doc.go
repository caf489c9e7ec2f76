// Package config loads tombstone's YAML configuration (configs/tombstone.yaml
// documents every key). Unknown keys and bad values are refused with a
// message naming the key; flags and environment variables, applied by the
// CLI, override the file.
package config
