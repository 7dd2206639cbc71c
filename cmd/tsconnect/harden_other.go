//go:build !linux

package main

func harden() error           { return nil }
func dumpable() (bool, error) { return true, nil }

func wipeInitialEnviron() error { return nil }
