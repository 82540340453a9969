using Appliance.Paxos.Encoding;

namespace Appliance.Paxos.Core;

// Catch-up by log and by snapshot, snapshots of the applied state, and trimming.
public sealed partial class PaxosNode
{
    private const byte SnapshotVersion = 1;

    private void RequestCatchUp(int from, TimeSpan now, bool force)
    {
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
            Send(from, new CatchUp(_commitIndex, TakeSnapshot(), []));
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
        if (_role == PaxosRole.Candidate)
        {
            StepDown(now); // the promises we collected were for a log we no longer have; run again later
        }
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
    }

    private SnapshotData TakeSnapshot() => new(_commitIndex, _committedConfig, EncodeNodeState());

    private void InstallSnapshot(SnapshotData snap)
    {
        RestoreNodeState(snap.Data);
        _committedConfig = snap.Members;
        _commitIndex = snap.Index;
        RemoveThrough(snap.Index);
        _firstIndex = snap.Index + 1;
        _lastSnapshot = snap;
        _batch.Snapshot = snap;
        _batchGating = true; // replies (acceptances at or below it) lean on it: written before they leave
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

    /// <summary>Every <see cref="PaxosOptions.SnapshotInterval"/> committed entries: snapshot the applied state and
    /// trim all but the last <see cref="PaxosOptions.KeepEntries"/> entries below it.</summary>
    private void MaybeSnapshot()
    {
        var last = _lastSnapshot?.Index ?? 0;
        if (_commitIndex - last < _options.SnapshotInterval)
        {
            return;
        }
        var snap = TakeSnapshot();
        _lastSnapshot = snap;
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
