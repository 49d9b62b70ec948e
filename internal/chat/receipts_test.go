package chat_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/parley-chat/parley"
)

func TestReadReceipts(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	n := p.n
	for _, b := range []string{"two", "three", "four"} {
		send(t, n, p.client, p.conv.ID, b)
	}
	clientStream := n.OpenStream(t, p.client.Token, -1)
	read := "/api/conversations/" + p.conv.ID + "/read"

	if c := getConv(t, n, p.pro, p.conv.ID); c.UnreadCount != 4 || c.LastReadSeq != 0 {
		t.Fatalf("before reading: unread %d, last_read %d", c.UnreadCount, c.LastReadSeq)
	}
	if res := n.Do(t, "POST", read, p.pro.Token, map[string]any{"up_to_seq": 2}, nil); res.StatusCode != http.StatusNoContent || len(res.Body) != 0 {
		t.Fatalf("read: %d %s", res.StatusCode, res.Body)
	}
	e := clientStream.NextOf(t, parley.EventReceipt, 5*time.Second)
	var r parley.Receipt
	e.Decode(t, &r)
	if !e.HasID || r.ConversationID != p.conv.ID || r.UserID != p.pro.ID || r.Kind != parley.ReceiptRead || r.UpToSeq != 2 || r.At.IsZero() {
		t.Fatalf("receipt = %s", e.Data)
	}
	if c := getConv(t, n, p.pro, p.conv.ID); c.UnreadCount != 2 || c.LastReadSeq != 2 {
		t.Fatalf("after reading 2: unread %d, last_read %d", c.UnreadCount, c.LastReadSeq)
	}
	if c := getConv(t, n, p.client, p.conv.ID); c.PeerLastReadSeq != 2 || c.PeerDeliveredSeq != 2 || c.LastReadSeq != 0 {
		t.Fatalf("client view: peer_last_read %d, peer_delivered %d", c.PeerLastReadSeq, c.PeerDeliveredSeq)
	}

	// Markers never move back, and a read that moves nothing writes nothing.
	head := logHead(t, n, p.client)
	for _, seq := range []int64{2, 1, 0} {
		if res := n.Do(t, "POST", read, p.pro.Token, map[string]any{"up_to_seq": seq}, nil); res.StatusCode != http.StatusNoContent {
			t.Fatalf("read %d: %d", seq, res.StatusCode)
		}
	}
	if got := logHead(t, n, p.client); got != head {
		t.Fatalf("reads that moved nothing wrote %d events", got-head)
	}
	if c := getConv(t, n, p.pro, p.conv.ID); c.LastReadSeq != 2 {
		t.Fatalf("read marker moved back to %d", c.LastReadSeq)
	}

	// Beyond the newest message it is clamped.
	n.Do(t, "POST", read, p.pro.Token, map[string]any{"up_to_seq": 1000}, nil)
	e = clientStream.NextOf(t, parley.EventReceipt, 5*time.Second)
	e.Decode(t, &r)
	if r.UpToSeq != 4 || r.Kind != parley.ReceiptRead {
		t.Fatalf("clamped receipt = %s", e.Data)
	}
	// The reader's own log has the receipt too (their other devices).
	evs := poll(t, n, p.pro, 0)
	if last := evs[len(evs)-1]; last.Type != parley.EventReceipt {
		t.Fatalf("reader's log ends with %s", last.Type)
	}

	// unread_count: the peer's messages above the marker, deleted ones excluded.
	var ms []*parley.Message
	for _, b := range []string{"five", "six", "seven"} {
		ms = append(ms, send(t, n, p.client, p.conv.ID, b))
	}
	send(t, n, p.pro, p.conv.ID, "own messages are never unread")
	n.Do(t, "DELETE", "/api/messages/"+ms[1].ID, p.client.Token, nil, nil)
	if c := getConv(t, n, p.pro, p.conv.ID); c.UnreadCount != 2 {
		t.Fatalf("unread after a delete = %d, want 2", c.UnreadCount)
	}
	if c := getConv(t, n, p.client, p.conv.ID); c.UnreadCount != 1 {
		t.Fatalf("client unread = %d, want 1", c.UnreadCount)
	}

	for _, body := range []any{map[string]any{}, map[string]any{"up_to_seq": -1}, map[string]any{"up_to_seq": "3"}, map[string]any{"up_to_seq": 2.5}} {
		wantError(t, n.Do(t, "POST", read, p.pro.Token, body, nil), 400, parley.EInvalid)
	}
}

func TestDeliveredReceipts(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	n := p.n
	proHead := logHead(t, n, p.pro)

	// A hundred messages while the professional is away…
	for range 100 {
		send(t, n, p.client, p.conv.ID, "burst")
	}
	if c := getConv(t, n, p.client, p.conv.ID); c.PeerDeliveredSeq != 0 {
		t.Fatalf("delivered before any stream: %d", c.PeerDeliveredSeq)
	}
	clientStream := n.OpenStream(t, p.client.Token, -1)
	// …reach them at once when they resume: one coalesced receipt.
	proStream := n.OpenStream(t, p.pro.Token, proHead)
	// One receipt when the replay reaches the socket in one write; a loaded
	// machine may split the write, and so the receipts, but never into
	// anything like one per message.
	var r parley.Receipt
	for receipts := 1; r.UpToSeq != 101; receipts++ {
		e := clientStream.NextOf(t, parley.EventReceipt, 5*time.Second)
		prev := r.UpToSeq
		e.Decode(t, &r)
		if r.Kind != parley.ReceiptDelivered || r.UserID != p.pro.ID || r.UpToSeq <= prev || r.UpToSeq > 101 || r.ConversationID != p.conv.ID {
			t.Fatalf("delivered receipt %d = %s (previous up to %d)", receipts, e.Data, prev)
		}
		if receipts > 3 {
			t.Fatalf("%d receipts for one replay of 100 messages: not coalesced", receipts)
		}
	}
	noEventOf(t, clientStream, parley.EventReceipt, 400*time.Millisecond)
	if e := proStream.NextOf(t, parley.EventReceipt, 5*time.Second); !e.HasID {
		t.Fatalf("the recipient's own devices get the receipt as a durable event")
	}
	c := getConv(t, n, p.client, p.conv.ID)
	if c.PeerDeliveredSeq != 101 || c.PeerLastReadSeq != 0 {
		t.Fatalf("client view: delivered %d read %d", c.PeerDeliveredSeq, c.PeerLastReadSeq)
	}

	// A live message is delivered through the live stream. The sender's own
	// stream receiving it does not count as delivery to the sender.
	send(t, n, p.client, p.conv.ID, "live")
	clientStream.NextOf(t, parley.EventReceipt, 5*time.Second).Decode(t, &r)
	if r.UpToSeq != 102 || r.UserID != p.pro.ID {
		t.Fatalf("live delivered receipt = %+v", r)
	}
	if c := getConv(t, n, p.pro, p.conv.ID); c.PeerDeliveredSeq != 0 {
		t.Fatalf("the client delivered nothing, yet peer_delivered_seq = %d", c.PeerDeliveredSeq)
	}

	// A poll that returns a message delivers it too (with no stream open).
	clientStream.Close()
	clientHead := logHead(t, n, p.client)
	m := send(t, n, p.pro, p.conv.ID, "via poll")
	evs := poll(t, n, p.client, clientHead)
	if len(evs) == 0 || evs[0].Type != parley.EventMessageCreated {
		t.Fatalf("poll = %v", eventTypes(evs))
	}
	eventually(t, 3*time.Second, "delivered via poll", func() bool {
		return getConv(t, n, p.pro, p.conv.ID).PeerDeliveredSeq == m.Seq
	})
}

// Reading marks as delivered what was read, so delivered never lags read.
func TestReadImpliesDelivered(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	n := p.n
	send(t, n, p.client, p.conv.ID, "two")
	n.Do(t, "POST", "/api/conversations/"+p.conv.ID+"/read", p.pro.Token, map[string]any{"up_to_seq": 2}, nil)
	c := getConv(t, n, p.client, p.conv.ID)
	if c.PeerLastReadSeq != 2 || c.PeerDeliveredSeq != 2 {
		t.Fatalf("read %d delivered %d", c.PeerLastReadSeq, c.PeerDeliveredSeq)
	}
}
