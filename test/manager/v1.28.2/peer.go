//go:build peer

// Package testpeer only names CloudNativePG's instance manager, so that this module's go.mod and
// go.sum pin the version and every dependency the test rig builds it with (scripts/build-cnpg-manager.sh).
package testpeer

import _ "github.com/cloudnative-pg/cloudnative-pg/cmd/manager"
