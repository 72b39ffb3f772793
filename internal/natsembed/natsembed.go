// Package natsembed runs a NATS server with JetStream inside the process: the
// broker of `worker dev`, of a worker started with an empty NATS_URL, and of
// the tests. It owns the server's options and nothing of the worker's streams.
package natsembed

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options for an embedded server.
type Options struct {
	// Dir holds JetStream's files. Required.
	Dir string
	// Port to listen on, on 127.0.0.1; 0 picks a free port, -1 does not
	// listen (in-process connections only).
	Port int
	// MaxPayload is the largest message the server accepts; default 8 MiB
	// so that oversized commands still reach the worker to be dead-lettered.
	MaxPayload int32
}

// Server is a running embedded NATS server.
type Server struct {
	*server.Server
}

// Start starts a server and waits until it accepts connections.
func Start(o Options) (*Server, error) {
	if o.Dir == "" {
		return nil, fmt.Errorf("natsembed: a data directory is required")
	}
	if o.MaxPayload == 0 {
		o.MaxPayload = 8 << 20
	}
	port := o.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: "graphops-embedded",
		Host:       "127.0.0.1",
		Port:       port,
		DontListen: o.Port < 0,
		JetStream:  true,
		StoreDir:   o.Dir,
		MaxPayload: o.MaxPayload,
		NoLog:      true,
		NoSigs:     true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsembed: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("natsembed: server not ready after 10s")
	}
	return &Server{s}, nil
}

// URL is the client URL of the server ("" when it does not listen).
func (s *Server) URL() string {
	if s.Addr() == nil {
		return ""
	}
	return s.ClientURL()
}

// Stop shuts the server down and waits for it to finish.
func (s *Server) Stop() {
	s.Shutdown()
	s.WaitForShutdown()
}
