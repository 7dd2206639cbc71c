//go:build !unix

package connector

func privateDirPattern() string { return "tsconnect-" }

func removeStaleDirs() {}
