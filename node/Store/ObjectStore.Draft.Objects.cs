using Appliance.Store.Meta;

namespace Appliance.Store;

public sealed partial class ObjectStore
{
    /// <summary>The draft's view of objects and collections: lookups that read the index once per key (kept for the
    /// publication), creation, removal, moves and splits.</summary>
    private sealed partial class Draft
    {
        /// <summary>Moves the object's draft to its new key; a draft of a missing object stays at the old key (its
        /// base, if any, is gone from there in this transaction).</summary>
        private async Task MoveAsync(string c, ObjectId o, string dc, ObjectId d)
        {
            var src = await ObjAsync(c, o, create: false);
            if ((await LookupAsync(dc, d)).Exists)
            {
                throw new ObjectExistsException(dc, d.ToString());
            }
            _objs[(dc, d)] = src;
            _objs[(c, o)] = new ObjDraft { Exists = false };
            Coll(c).Objects--;
            Coll(dc).Objects++;
            Meta.Redo.ObjMove(Redo, c, o, dc, d);
        }

        /// <summary>A split is prepared object by object (so that later operations of the transaction see each
        /// moved object where it went), and journaled as one entry.</summary>
        private async Task SplitAsync(string source, int bits, uint match, string destination)
        {
            var range = SortKeyRange.ForHashBits(bits, match);
            var sd = Coll(source);
            var dd = Coll(destination);
            if (!sd.Exists)
            {
                throw new CollectionNotFoundException(source);
            }
            if (!dd.Exists)
            {
                throw new CollectionNotFoundException(destination);
            }
            foreach (var id in await CandidatesAsync(destination, range))
            {
                if ((await LookupAsync(destination, id)).Exists)
                {
                    throw new ObjectExistsException(destination, id.ToString());
                }
            }
            long moved = 0;
            foreach (var id in await CandidatesAsync(source, range))
            {
                var od = await LookupAsync(source, id);
                if (od.Exists)
                {
                    await LoadAsync(MetaKeys.OnodeKey(destination, id));
                    _objs[(destination, id)] = od;
                    _objs[(source, id)] = new ObjDraft { Exists = false };
                    moved++;
                }
            }
            sd.Objects -= moved;
            dd.Objects += moved;
            Meta.Redo.CollSplit(Redo, source, bits, match, destination);
        }

        /// <summary>Every id in <paramref name="range"/> that may name an object of <paramref name="c"/> now: those
        /// of the collection before this transaction (a scan of its keys in the range, kept for the publication), and
        /// those this transaction has a draft of there.</summary>
        private async Task<List<ObjectId>> CandidatesAsync(string c, SortKeyRange range)
        {
            var ids = new HashSet<ObjectId>();
            var from = MetaKeys.OnodeRangeKey(c, range.Start);
            var to = MetaKeys.OnodeRangeKey(c, range.End);
            var rangeKey = DraftSource.RangeKey(from, to);
            if (!Source.Ranges.ContainsKey(rangeKey))
            {
                var slots = await s.ScanSlotsAsync(from, to, int.MaxValue);
                Source.Ranges[rangeKey] = [.. slots.Select(kv => kv.Key)];
                foreach (var (key, value) in slots)
                {
                    var slot = OnodeCodec.Decode(key, value, s._geo.FirstDataBlock, s._geo.EndDataBlock);
                    Source.Slots.TryAdd(key, slot);
                }
            }
            foreach (var key in Source.Ranges[rangeKey])
            {
                if (Source.Slots[key] is { } slot)
                {
                    foreach (var on in slot.Objects)
                    {
                        ids.Add(on.Id);
                    }
                }
            }
            foreach (var (dc, id) in _objs.Keys)
            {
                if (dc == c && range.Contains(id))
                {
                    ids.Add(id);
                }
            }
            return [.. ids];
        }

        private async Task<ObjDraft> ObjAsync(string c, ObjectId o, bool create)
        {
            var od = await LookupAsync(c, o);
            if (!od.Exists)
            {
                if (!create)
                {
                    throw new ObjectNotFoundException(c, o.ToString());
                }
                od.Reset();
                od.Exists = true;
                Coll(c).Objects++;
                Meta.Redo.ObjCreate(Redo, c, o);
            }
            return od;
        }

        /// <summary>This transaction's view of an object, existing or not; the collection must exist. The object's
        /// index key is read once (nothing else changes it while we hold the collection's turn) and kept for the
        /// publication.</summary>
        private async Task<ObjDraft> LookupAsync(string c, ObjectId o)
        {
            var cd = Coll(c);
            if (!cd.Exists)
            {
                throw new CollectionNotFoundException(c);
            }
            if (!_objs.TryGetValue((c, o), out var od))
            {
                var on = (await LoadAsync(MetaKeys.OnodeKey(c, o)))?.Find(o);
                od = new ObjDraft { Exists = on is not null, Base = on, Size = on?.Size ?? 0 };
                _objs.Add((c, o), od);
            }
            return od;
        }

        /// <summary>The objects under an index key before this transaction (read once, kept for the publication).</summary>
        private async Task<OnodeSlot?> LoadAsync(byte[] key)
        {
            if (!Source.Slots.TryGetValue(key, out var slot))
            {
                slot = await s.LoadSlotAsync(key);
                Source.Slots[key] = slot;
            }
            return slot;
        }

        private async Task RemoveAsync(string c, ObjectId o)
        {
            var od = await ObjAsync(c, o, create: false);
            Meta.Redo.ObjRemove(Redo, c, o);
            od.Reset();
            od.Exists = false;
            Coll(c).Objects--;
        }
    }
}
