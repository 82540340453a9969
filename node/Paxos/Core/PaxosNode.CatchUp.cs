using Appliance.Paxos.Encoding;

namespace Appliance.Paxos.Core;

// Catch-up by log and by snapshot, snapshots of the applied state, and trimming.
public sealed partial class PaxosNode
{
    private const byte SnapshotVersion = 1;

    private void RequestCatchUp(int from, TimeSpan now, bool force)
    {
        if (!force && _incoming is { } inc && inc.Index > _commitIndex && now - inc.LastProgress < 2 * _options.RetransmitInterval)
        {
            return; // a snapshot transfer is under way and moving: it brings us there
        }
        if (force || _lastCatchUpRequest is not { } last || now - last >= _options.RetransmitInterval)
        {
            _lastCatchUpRequest = now;
            Send(from, new CatchUpRequest(_commitIndex + 1));
        }
    }

    private void OnCatchUpRequest(int from, CatchUpRequest m)
    {
        if (m.FromIndex > _commitIndex || m.FromIndex < 1)
        {
            return;
        }
        // A snapshot when the log no longer reaches back far enough, when the requester has nothing (it also needs
        // the member set), or when the gap is large.
        if (m.FromIndex < _firstIndex || m.FromIndex == 1 || _commitIndex - m.FromIndex >= 4L * _options.MaxEntriesPerMessage)
        {
            SendSnapshotChunk(from, ServingSnapshot(m.FromIndex), 0);
            return;
        }
        var last = Math.Min(_commitIndex, m.FromIndex + _options.MaxEntriesPerMessage - 1);
        var entries = new List<AcceptedEntry>();
        for (var i = m.FromIndex; i <= last; i++)
        {
            entries.Add(_log[i]);
        }
        Send(from, new CatchUp(_commitIndex, null, entries));
    }

    private void OnCatchUp(int from, CatchUp m, TimeSpan now)
    {
        if (_role == PaxosRole.Leader)
        {
            return; // a leader is never behind the commit index of anyone it could hear from (see OnPromise)
        }
        var before = _commitIndex;
        if (m.Snapshot is { } snap && snap.Index > _commitIndex)
        {
            InstallSnapshot(snap);
        }
        foreach (var e in m.Entries)
        {
            if (e.Index != _commitIndex + 1)
            {
                continue;
            }
            // The sender's entry is chosen. A value we accepted in a higher ballot is necessarily the same value.
            if (!(_log.TryGetValue(e.Index, out var old) && old.Value.Equals(e.Value)))
            {
                _log[e.Index] = e;
                StageEntry(e);
            }
            ApplyThrough(e.Index);
        }
        if (_commitIndex < m.CommitIndex && m.Entries.Count > 0)
        {
            RequestCatchUp(from, now, force: true);
        }
        if (_role == PaxosRole.Candidate && _commitIndex > before)
        {
            RestartPhase1(now); // the promises we collected reported from an older commit index
        }
    }

    private SnapshotData TakeSnapshot() => new(_commitIndex, _committedConfig, EncodeNodeState());

    // ---- snapshot transfer in pieces ----

    // The snapshot this member sends to lagging members, and its id (a hash of its bytes); kept while it is of use,
    // so concurrent and resumed transfers read one stable byte string.
    private SnapshotData? _serving;
    private long _servingId;

    // The snapshot this member is receiving, if any.
    private IncomingSnapshot? _incoming;

    /// <summary>The snapshot to send to a member that needs everything from <paramref name="fromIndex"/> on: the one
    /// being served if it reaches that far and our log still continues from it, else a fresh one.</summary>
    private SnapshotData ServingSnapshot(long fromIndex)
    {
        if (_serving is { } s && s.Index >= fromIndex && s.Index >= _firstIndex - 1 && s.Index <= _commitIndex)
        {
            return s;
        }
        var snap = TakeSnapshot();
        _servingId = ContentHash.Of(snap.Index, snap.Data);
        return _serving = snap;
    }

    private void SendSnapshotChunk(int to, SnapshotData snap, long offset)
    {
        var length = (int)Math.Min(_options.MaxSnapshotChunkBytes, snap.Data.Length - offset);
        Send(to, new SnapshotChunk(snap.Index, _servingId, snap.Members, snap.Data.Length, offset, snap.Data.AsSpan((int)offset, length).ToArray()));
    }

    private void OnSnapshotChunkRequest(int from, SnapshotChunkRequest m)
    {
        if (_serving is { } s && s.Index == m.Index && _servingId == m.TransferId && m.Offset >= 0 && m.Offset <= s.Data.Length)
        {
            SendSnapshotChunk(from, s, m.Offset);
        }
        else if (_commitIndex >= m.Index && _commitIndex >= 1)
        {
            // We no longer serve that copy (restarted, or moved on): serve a current one — from the requested offset
            // if it is the same bytes (a restart with nothing new committed), else from the start.
            var current = ServingSnapshot(m.Index);
            SendSnapshotChunk(from, current, _servingId == m.TransferId && m.Offset >= 0 && m.Offset <= current.Data.Length ? m.Offset : 0);
        }
    }

    /// <summary>A piece of a snapshot. Pieces are taken in order from one copy at one sender; each asks for the
    /// next, and a stalled transfer is resumed from where it stopped by <see cref="ResumeSnapshotTransfer"/>.</summary>
    private void OnSnapshotChunk(int from, SnapshotChunk m, TimeSpan now)
    {
        if (_role == PaxosRole.Leader || m.Index <= _commitIndex)
        {
            return; // nothing we lack (a leader is never behind anyone it could hear from)
        }
        if (m.Total > _options.MaxSnapshotBytes || m.Total < 0 || m.Offset < 0 || m.Offset > m.Total - m.Data.Length)
        {
            return; // malformed or beyond what we accept
        }
        if (_incoming is not { } inc || inc.TransferId != m.TransferId || inc.From != from)
        {
            if (m.Offset != 0)
            {
                Send(from, new SnapshotChunkRequest(m.Index, m.TransferId, 0)); // a piece of a copy we do not hold: from the start
                return;
            }
            // A new copy replaces ours unless ours is moving and comes from another sender (the same sender sending a
            // new copy no longer serves the old one).
            var current = _incoming;
            if (current is not null && current.Index > _commitIndex && current.From != from
                && now - current.LastProgress < 2 * _options.RetransmitInterval)
            {
                return;
            }
            inc = _incoming = new IncomingSnapshot(m.Index, m.TransferId, m.Members, from, new byte[m.Total]) { LastProgress = now, LastRequest = now };
        }
        if (m.Offset != inc.Received)
        {
            return; // a duplicate or a stale piece; the resume timer asks again if we stall
        }
        m.Data.CopyTo(inc.Data.AsSpan((int)inc.Received));
        inc.Received += m.Data.Length;
        inc.LastProgress = now;
        if (inc.Received < inc.Data.Length)
        {
            inc.LastRequest = now;
            Send(from, new SnapshotChunkRequest(inc.Index, inc.TransferId, inc.Received));
            return;
        }
        _incoming = null;
        InstallSnapshot(new SnapshotData(inc.Index, inc.Members, inc.Data));
        RequestCatchUp(from, now, force: true); // the entries after it
        if (_role == PaxosRole.Candidate)
        {
            RestartPhase1(now); // the promises we collected reported from an older commit index
        }
    }

    /// <summary>Asks again for the next piece of a stalled transfer (a piece or a request was lost); gives up on a
    /// transfer that has not moved for two election timeouts (ordinary catch-up then starts a new one).</summary>
    private void ResumeSnapshotTransfer(TimeSpan now)
    {
        if (_incoming is not { } inc)
        {
            return;
        }
        if (inc.Index <= _commitIndex || now - inc.LastProgress >= 2 * _options.ElectionTimeout)
        {
            _incoming = null;
            return;
        }
        if (now - inc.LastRequest >= _options.RetransmitInterval)
        {
            inc.LastRequest = now;
            Send(inc.From, new SnapshotChunkRequest(inc.Index, inc.TransferId, inc.Received));
        }
    }

    private sealed class IncomingSnapshot(long index, long transferId, MemberSet members, int from, byte[] data)
    {
        public long Index { get; } = index;

        public long TransferId { get; } = transferId;

        public MemberSet Members { get; } = members;

        public int From { get; } = from;

        public byte[] Data { get; } = data;

        public long Received { get; set; }

        public TimeSpan LastProgress { get; set; }

        public TimeSpan LastRequest { get; set; }
    }

    /// <summary>Most snapshot intervals between two snapshots when the state is larger than what was committed.</summary>
    private const int MaxIntervalsBetweenSnapshots = 16;

    // Bytes of the entries committed since the last snapshot (commands' payloads and their session keys).
    private long _bytesSinceSnapshot;

    private static long SizeOf(LogValue value)
    {
        long bytes = 16;
        foreach (var c in value.Commands)
        {
            bytes += c.Payload.Length + 16;
        }
        return bytes;
    }

    private void InstallSnapshot(SnapshotData snap)
    {
        _bytesSinceSnapshot = 0;
        RestoreNodeState(snap.Data);
        _committedConfig = snap.Members;
        _commitIndex = snap.Index;
        RemoveThrough(snap.Index);
        _firstIndex = snap.Index + 1;
        _lastSnapshot = snap;
        _batch.Snapshot = snap;
        _batchGating = true; // replies (acceptances at or below it) lean on it: written before they leave
        _appliedAheadOfDisk = true;
        Trim(snap.Index);
        _batch.CommitIndex = snap.Index;

        // Proposals made here that the snapshot already covers.
        foreach (var (key, _) in _pending.ToArray())
        {
            if (_sessions.TryGetValue(key.Client, out var s) && key.Seq <= s.LastSeq)
            {
                _pending.Remove(key);
                Complete(key.Seq == s.LastSeq
                    ? new ProposalOutcome(key.Client, key.Seq, ProposalStatus.Committed, s.LastResult)
                    : new ProposalOutcome(key.Client, key.Seq, ProposalStatus.Superseded, null));
            }
        }
    }

    /// <summary>Every <see cref="PaxosOptions.SnapshotInterval"/> committed entries (or later, see below): snapshot the
    /// applied state and trim all but the last <see cref="PaxosOptions.KeepEntries"/> entries below it.</summary>
    private void MaybeSnapshot()
    {
        var last = _lastSnapshot?.Index ?? 0;
        if (_commitIndex - last < _options.SnapshotInterval)
        {
            return;
        }
        // A snapshot costs its whole size (encoded, written, flushed) however little changed. Amortize it: wait until
        // the entries committed since the last one hold as many bytes as it did, so snapshots at most double what is
        // written, and the log between snapshots stays bounded by the state's size (and by a multiple of the interval).
        if (_lastSnapshot is { } previous && _bytesSinceSnapshot < previous.Data.Length
            && _commitIndex - last < (long)_options.SnapshotInterval * MaxIntervalsBetweenSnapshots)
        {
            return;
        }
        var snap = TakeSnapshot();
        _lastSnapshot = snap;
        _bytesSinceSnapshot = 0;
        _batch.Snapshot = snap;
        var through = _commitIndex - _options.KeepEntries;
        if (through >= _firstIndex)
        {
            RemoveThrough(through);
            _firstIndex = through + 1;
            Trim(through);
        }
    }

    /// <summary>Records a trim in the batch. The batch applies its trim before its entries, so entries the batch
    /// already holds at or below the trim point (staged earlier in a scope) are dropped from it here: they are
    /// covered by the snapshot written with the trim.</summary>
    private void Trim(long through)
    {
        _batch.TrimThrough = Math.Max(_batch.TrimThrough ?? 0, through);
        if (_batch.Entries.RemoveAll(e => e.Index <= through) > 0)
        {
            _batchSlots.Clear();
            for (var i = 0; i < _batch.Entries.Count; i++)
            {
                _batchSlots[_batch.Entries[i].Index] = i;
            }
        }
    }

    /// <summary>The node's part of a snapshot: the client sessions (for at-most-once application), then the state
    /// machine's bytes.</summary>
    private byte[] EncodeNodeState()
    {
        var w = new PaxosWriter();
        w.U8(SnapshotVersion);
        w.I32(_sessions.Count);
        foreach (var (client, s) in _sessions.OrderBy(kv => kv.Key))
        {
            w.I64(client);
            w.I64(s.LastSeq);
            w.I64(s.LastIndex);
            w.Bytes(s.LastResult);
        }
        w.Bytes(_machine.Snapshot());
        return w.ToArray();
    }

    private void RestoreNodeState(byte[] data)
    {
        var r = new PaxosReader(data);
        var version = r.U8();
        if (version != SnapshotVersion)
        {
            throw new PaxosFormatException($"unsupported snapshot version {version}");
        }
        var n = r.Count(28);
        _sessions.Clear();
        for (var i = 0; i < n; i++)
        {
            var client = r.I64();
            var seq = r.I64();
            var index = r.I64();
            _sessions[client] = new Session(seq, r.Bytes(), index);
        }
        _machine.Restore(r.Bytes());
    }
}
