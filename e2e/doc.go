// Package e2e holds stq's end-to-end and reliability tests: they build the
// real binary, run real daemons on temporary homes and drive them as users,
// scripts and attackers do. It has no code of its own outside its tests.
package e2e
