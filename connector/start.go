package connector

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"tailscale.com/ipn"
)

// Kind classifies why Start failed, for exit codes and hints.
type Kind int

const (
	KindOther       Kind = iota
	KindKey              // the control plane rejected the key, or it cannot work (an OAuth secret without tags)
	KindLogin            // the control plane wants an interactive login or an admin's approval
	KindUnreachable      // the control plane did not answer before the deadline
	KindKeySource        // no key: the source failed (empty environment, unreadable file, Vault down, sealed or refusing); nothing reached the control plane
)

func (k Kind) String() string {
	switch k {
	case KindKeySource:
		return "no auth key"
	case KindKey:
		return "auth key rejected"
	case KindLogin:
		return "login required"
	case KindUnreachable:
		return "control plane unreachable"
	}
	return "start failed"
}

// StartError is returned by Start when the node could not join.
type StartError struct {
	Kind       Kind
	ControlURL string
	Err        error
	Hint       string // what to do about it, for people
}

func (e *StartError) Error() string {
	if e.Kind == KindKeySource {
		// The control plane was never contacted; the source's error
		// names where the key was looked for.
		return fmt.Sprintf("connector: getting the auth key: %v", e.Err)
	}
	return fmt.Sprintf("connector: joining %s: %s: %v", e.ControlURL, e.Kind, e.Err)
}

// ErrClientSecretNeedsTags is the StartError's Err when the key is an
// OAuth client secret and Config.Tags is empty.
var ErrClientSecretNeedsTags = errors.New("the key is an OAuth client secret (tskey-client-…), which can only create tagged nodes")

func (e *StartError) Unwrap() error { return e.Err }

// awaitRunning watches the node's state until it is Running with
// addresses. tsnet.Server.Up does not fail on NeedsLogin, so a bad key
// would hang until the deadline; here an error from the control plane or a
// request for interactive login ends the wait at once.
func (c *Connector) awaitRunning(ctx context.Context) error {
	w, err := c.lc.WatchIPNBus(ctx, ipn.NotifyInitialState)
	if err != nil {
		return c.startErr(ctx, err)
	}
	defer w.Close()
	for {
		n, err := w.Next()
		if err != nil {
			return c.startErr(ctx, err)
		}
		if n.ErrMessage != nil {
			return c.rejected(*n.ErrMessage)
		}
		if n.BrowseToURL != nil && *n.BrowseToURL != "" {
			// Never print the URL: whoever opened it could claim the node.
			return &StartError{Kind: KindLogin, ControlURL: c.controlURL,
				Err:  errors.New("the control plane asks for an interactive login, so the key was not accepted"),
				Hint: "use a valid, unexpired, pre-approved auth key (ephemeral, tagged)"}
		}
		if n.State == nil {
			continue
		}
		switch *n.State {
		case ipn.NeedsMachineAuth:
			return &StartError{Kind: KindLogin, ControlURL: c.controlURL,
				Err:  errors.New("the node needs an admin's approval (device approval is on)"),
				Hint: "mint the key with \"Pre-approved\" checked, or approve the node in the admin console"}
		case ipn.Running:
			st, err := c.lc.StatusWithoutPeers(ctx)
			if err != nil {
				return c.startErr(ctx, err)
			}
			if len(st.TailscaleIPs) > 0 {
				return nil
			}
		}
	}
}

// rejected turns an error message from the backend into a StartError.
// Control plane messages vary ("invalid key", "authkey expired",
// "requested tags … are invalid or not permitted"); all mean the key.
func (c *Connector) rejected(msg string) error {
	hint := "mint a new key (ephemeral, tagged, pre-approved; a single-use key works once) and check it has not expired or been revoked"
	low := strings.ToLower(msg)
	if strings.Contains(low, "tag") {
		hint = "the key may not carry the requested tags: make the key's owner a tagOwner of each tag, or request only the key's own tags"
	}
	return &StartError{Kind: KindKey, ControlURL: c.controlURL, Err: errors.New(msg), Hint: hint}
}

// startErr explains a wait that ended without a verdict: most often the
// control plane never answered.
func (c *Connector) startErr(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		return fmt.Errorf("connector: watching node state: %w", err)
	}
	detail := "no answer"
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if st, serr := c.lc.StatusWithoutPeers(sctx); serr == nil && len(st.Health) > 0 {
		detail = strings.Join(st.Health, "; ")
	}
	return &StartError{Kind: KindUnreachable, ControlURL: c.controlURL,
		Err:  fmt.Errorf("not running after %v: %s", c.cfg.ReadyTimeout, detail),
		Hint: "check Config.ControlURL (or TS_CONTROL_URL) and that this host may reach it"}
}
