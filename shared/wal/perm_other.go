//go:build !linux

package wal

func privateFiles(string) error { return ErrNoPrivateFiles }
