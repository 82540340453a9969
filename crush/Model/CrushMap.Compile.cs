namespace Appliance.Crush.Model;

public sealed partial class CrushMap
{
    /// <summary>Ceph refuses deeper hierarchies in practice; we refuse absurd ones instead of recursing forever.</summary>
    private const int MaxDepth = 64;

    /// <summary>
    /// Builds a map from its definition as `crushtool -c` does: automatic bucket ids, default item weights,
    /// item positions, device-class shadow trees (built when the first rule is reached) and rule resolution.
    /// </summary>
    /// <exception cref="CrushMapException">The definition is inconsistent; the message names the place.</exception>
    public static CrushMap Compile(CrushMapDefinition def)
    {
        ArgumentNullException.ThrowIfNull(def);
        return new Compiler(def).Run();
    }

    private sealed class Compiler(CrushMapDefinition def)
    {
        private readonly Dictionary<string, int> _itemIds = new(StringComparer.Ordinal);
        private readonly Dictionary<int, int> _deviceClass = [];
        private readonly List<string> _classes = [];
        private readonly Dictionary<string, int> _classIds = new(StringComparer.Ordinal);
        private readonly Dictionary<string, int> _typeIds = new(StringComparer.Ordinal);
        private readonly Dictionary<int, string> _typeNames = [];
        private readonly List<CrushBucket?> _buckets = [];
        private readonly List<int> _order = [];
        private readonly HashSet<int> _reserved = [];
        private readonly HashSet<int> _classLineIds = [];
        private readonly Dictionary<int, Dictionary<int, int>> _pinnedShadowIds = [];
        private readonly Dictionary<int, Dictionary<int, int>> _shadowIds = [];
        private readonly HashSet<int> _isChild = [];
        private int _maxDevices;

        public CrushMap Run()
        {
            foreach (var t in def.Types)
            {
                if (_typeIds.ContainsKey(t.Name))
                {
                    throw new CrushMapException($"type '{t.Name}' is declared twice", t.Position);
                }
                if (_typeNames.ContainsKey(t.Id))
                {
                    throw new CrushMapException($"type id {t.Id} is declared twice ('{_typeNames[t.Id]}' and '{t.Name}')", t.Position);
                }
                if (t.Id < 0)
                {
                    throw new CrushMapException($"type id {t.Id} of '{t.Name}' is negative; type ids are 0 or more", t.Position);
                }
                _typeIds[t.Name] = t.Id;
                _typeNames[t.Id] = t.Name;
            }

            CheckTries("choose_total_tries", def.Tunables.ChooseTotalTries, default);
            CheckTries("choose_local_tries", def.Tunables.ChooseLocalTries, default);
            CheckTries("choose_local_fallback_tries", def.Tunables.ChooseLocalFallbackTries, default);

            var classOrder = def.ClassOrder ?? DefaultClassOrder();
            foreach (var c in classOrder)
            {
                ClassId(c);
            }

            var deviceIds = new HashSet<int>();
            foreach (var d in def.Devices)
            {
                if (d.Id < 0)
                {
                    throw new CrushMapException($"device id {d.Id} is negative; device ids are 0 or more (negative ids are buckets)", d.Position);
                }
                if (d.Id >= MaxId)
                {
                    throw new CrushMapException($"device id {d.Id} is too large (at most {MaxId - 1})", d.Position);
                }
                if (!deviceIds.Add(d.Id))
                {
                    throw new CrushMapException($"device id {d.Id} is declared twice", d.Position);
                }
                if (!_itemIds.TryAdd(d.Name, d.Id))
                {
                    throw new CrushMapException($"device name '{d.Name}' is declared twice", d.Position);
                }
                if (d.Class is not null)
                {
                    _deviceClass[d.Id] = ClassId(d.Class);
                }
                _maxDevices = Math.Max(_maxDevices, d.Id + 1);
            }

            // Every id written at the start of a bucket body is reserved before any bucket is built, so automatic
            // ids never take one of them.
            foreach (var b in def.Buckets)
            {
                if (b.Id is { } id)
                {
                    if (id >= 0)
                    {
                        throw new CrushMapException($"bucket '{b.Name}' has id {id}; bucket ids are negative (-1, -2, ...)", b.Position);
                    }
                    if (id <= -MaxId)
                    {
                        throw new CrushMapException($"bucket '{b.Name}' has id {id}; bucket ids go down to {1 - MaxId}", b.Position);
                    }
                    _reserved.Add(id);
                }
                foreach (var s in b.ShadowIds)
                {
                    if (s.Id <= -MaxId)
                    {
                        throw new CrushMapException($"bucket '{b.Name}' has class id {s.Id}; bucket ids go down to {1 - MaxId}", s.Position);
                    }
                    if (s.Id >= 0)
                    {
                        throw new CrushMapException($"bucket '{b.Name}' has class id {s.Id} for class '{s.Class}'; bucket ids are negative", s.Position);
                    }
                    _reserved.Add(s.Id);
                    _classLineIds.Add(s.Id);
                }
            }

            var beforeRule = Math.Clamp(def.BucketsBeforeFirstRule ?? def.Buckets.Count, 0, def.Buckets.Count);
            var builtShadows = false;
            for (var i = 0; i < def.Buckets.Count; i++)
            {
                if (i == beforeRule && def.Rules.Count > 0)
                {
                    BuildShadows();
                    builtShadows = true;
                }
                AddBucket(def.Buckets[i]);
            }
            if (!builtShadows && def.Rules.Count > 0)
            {
                BuildShadows();
            }

            var rules = new List<CrushRule>();
            var ruleIds = new HashSet<int>();
            var ruleNames = new HashSet<string>(StringComparer.Ordinal);
            foreach (var r in def.Rules)
            {
                if (!ruleIds.Add(r.Id))
                {
                    throw new CrushMapException($"rule id {r.Id} of rule '{r.Name}' is already used by another rule", r.Position);
                }
                if (!ruleNames.Add(r.Name))
                {
                    throw new CrushMapException($"rule name '{r.Name}' is used twice", r.Position);
                }
                if (r.Id < 0)
                {
                    throw new CrushMapException($"rule '{r.Name}' has id {r.Id}; rule ids are 0 or more", r.Position);
                }
                rules.Add(CompileRule(r));
            }

            var tunables = def.Tunables;
            return new CrushMap(
                tunables, def.Devices.ToList(), def.Types.ToList(), _classes.ToList(), _buckets.ToArray(), _order.ToList(), rules,
                _itemIds, _deviceClass, _shadowIds, _maxDevices, new HashSet<string>(def.WrittenTunables, StringComparer.Ordinal));
        }

        /// <summary>
        /// Retry counts above this are refused: CRUSH retries that often per replica, so a map where placement
        /// fails would take hours per input (Ceph uses 50 to a few hundred).
        /// </summary>
        private const int MaxTries = 10000;

        /// <summary>
        /// Device ids above this and bucket ids below its negation are refused: the mapper keeps arrays indexed
        /// by id, and real clusters stay far below (Ceph's own limits are in the same range).
        /// </summary>
        public const int MaxId = 1 << 20;

        private static void CheckTries(string what, int value, SourcePosition position)
        {
            if (value > MaxTries)
            {
                throw new CrushMapException($"{what} is {value}; more than {MaxTries} tries would make failing placements run for hours (Ceph uses 50 to a few hundred)", position);
            }
        }

        private List<string> DefaultClassOrder()
        {
            var order = new List<string>();
            foreach (var d in def.Devices)
            {
                if (d.Class is not null && !order.Contains(d.Class))
                {
                    order.Add(d.Class);
                }
            }
            foreach (var b in def.Buckets)
            {
                foreach (var s in b.ShadowIds)
                {
                    if (!order.Contains(s.Class))
                    {
                        order.Add(s.Class);
                    }
                }
            }
            return order;
        }

        private int ClassId(string name)
        {
            if (!_classIds.TryGetValue(name, out var id))
            {
                id = _classes.Count;
                _classes.Add(name);
                _classIds[name] = id;
            }
            return id;
        }

        private bool BucketExists(int id)
        {
            var index = -1 - id;
            return index >= 0 && index < _buckets.Count && _buckets[index] is not null;
        }

        private void Store(CrushBucket bucket, SourcePosition position)
        {
            var index = -1 - bucket.Id;
            if (BucketExists(bucket.Id))
            {
                throw new CrushMapException($"bucket id {bucket.Id} of '{bucket.Name}' is already used by '{_buckets[index]!.Name}'", position);
            }
            while (_buckets.Count <= index)
            {
                _buckets.Add(null);
            }
            _buckets[index] = bucket;
        }

        private void AddBucket(BucketDef b)
        {
            if (!_typeIds.TryGetValue(b.TypeName, out var typeId))
            {
                throw new CrushMapException($"unknown bucket type '{b.TypeName}' for bucket '{b.Name}'; declare it with a 'type N {b.TypeName}' line", b.Position);
            }
            if (_itemIds.ContainsKey(b.Name))
            {
                throw new CrushMapException($"bucket name '{b.Name}' is already used by another device or bucket", b.Position);
            }
            if (b.Hash != 0)
            {
                throw new CrushMapException($"bucket '{b.Name}' uses hash {b.Hash}; only 0 (rjenkins1) exists", b.Position);
            }
            var size = b.Items.Count;
            var items = new int[size];
            var weights = new uint[size];
            var used = new bool[size];
            foreach (var it in b.Items)
            {
                if (it.Pos is { } p)
                {
                    if (p < 0 || p >= size)
                    {
                        throw new CrushMapException($"item '{it.Name}' in bucket '{b.Name}' has pos {p}, but the bucket has {size} items (pos is 0..{size - 1})", it.Position);
                    }
                    if (used[p])
                    {
                        throw new CrushMapException($"item '{it.Name}' in bucket '{b.Name}': pos {p} is given twice", it.Position);
                    }
                    used[p] = true;
                }
            }
            var next = 0;
            ulong total = 0;
            foreach (var it in b.Items)
            {
                if (!_itemIds.TryGetValue(it.Name, out var id) || (id < 0 && !BucketExists(id)))
                {
                    throw new CrushMapException(
                        $"item '{it.Name}' in bucket '{b.Name}' is not defined; declare devices with 'device' lines and define a bucket before the buckets that contain it",
                        it.Position);
                }
                if (id < 0 && Depth(id) >= MaxDepth)
                {
                    throw new CrushMapException($"bucket '{b.Name}' is nested more than {MaxDepth} levels deep", it.Position);
                }
                uint weight;
                if (it.Weight is { } w)
                {
                    if (id >= 0 && w > 100 * 0x10000)
                    {
                        throw new CrushMapException($"device '{it.Name}' has weight {w / 65536.0:0.###}; a device weight is at most 100.0", it.Position);
                    }
                    weight = w;
                }
                else if (id >= 0)
                {
                    weight = 0x10000;
                }
                else
                {
                    weight = _buckets[-1 - id]!.Weight;
                }
                int pos;
                if (it.Pos is { } p)
                {
                    pos = p;
                }
                else
                {
                    while (used[next])
                    {
                        next++;
                    }
                    pos = next;
                    used[pos] = true;
                }
                items[pos] = id;
                weights[pos] = weight;
                total += weight;
                if (id >= 0)
                {
                    _maxDevices = Math.Max(_maxDevices, id + 1);
                }
            }
            if (total > uint.MaxValue)
            {
                throw new CrushMapException($"the weights of bucket '{b.Name}' add up to more than 65535.99998 (the 16.16 fixed-point limit)", b.Position);
            }
            if (b.Alg == BucketAlg.Uniform && weights.Distinct().Count() > 1)
            {
                throw new CrushMapException($"uniform bucket '{b.Name}' has items of different weights; a uniform bucket needs equal weights (use straw2)", b.Position);
            }
            int bucketId;
            if (b.Id is { } explicitId)
            {
                bucketId = explicitId;
            }
            else
            {
                bucketId = -1;
                while (_reserved.Contains(bucketId) || BucketExists(bucketId))
                {
                    bucketId--;
                }
                _reserved.Add(bucketId);
            }
            var bucket = new CrushBucket(bucketId, b.Name, typeId, b.Alg, b.Hash, items, weights, def.Tunables.StrawCalcVersion);
            Store(bucket, b.Position);
            _itemIds[b.Name] = bucketId;
            _order.Add(bucketId);
            foreach (var item in items)
            {
                if (item < 0)
                {
                    _isChild.Add(item);
                }
            }
            if (b.ShadowIds.Count > 0)
            {
                var pins = new Dictionary<int, int>();
                foreach (var s in b.ShadowIds)
                {
                    if (!pins.TryAdd(ClassId(s.Class), s.Id))
                    {
                        throw new CrushMapException($"bucket '{b.Name}' has two ids for class '{s.Class}'", s.Position);
                    }
                }
                _pinnedShadowIds[bucketId] = pins;
            }
        }

        private int Depth(int bucketId)
        {
            var depth = 0;
            var b = _buckets[-1 - bucketId]!;
            foreach (var item in b.ItemsArray)
            {
                if (item < 0)
                {
                    depth = Math.Max(depth, Depth(item));
                }
            }
            return depth + 1;
        }

        // Device-class shadow trees, as CrushWrapper::populate_classes does: roots in ascending id order, classes in
        // ascending class id order, children cloned (and numbered) before their parent.
        private void BuildShadows()
        {
            var roots = _order.Where(id => !_isChild.Contains(id)).OrderBy(id => id).ToList();
            try
            {
                foreach (var root in roots)
                {
                    for (var c = 0; c < _classes.Count; c++)
                    {
                        Clone(root, c);
                    }
                }
            }
            catch (UniformCloneFailed)
            {
                // crushtool cannot add items to a cloned uniform bucket: populate_classes stops at that point and
                // keeps the clones made so far. Rules that take a class it did not reach fail to compile.
            }
        }

        private sealed class UniformCloneFailed : Exception;

        private int Clone(int originalId, int classId)
        {
            var original = _buckets[-1 - originalId]!;
            var name = original.Name + "~" + _classes[classId];
            if (_itemIds.TryGetValue(name, out var existing))
            {
                return existing;
            }
            var items = new List<int>();
            var weights = new List<uint>();
            for (var i = 0; i < original.ItemsArray.Length; i++)
            {
                var item = original.ItemsArray[i];
                if (item >= 0)
                {
                    if (_deviceClass.TryGetValue(item, out var dc) && dc == classId)
                    {
                        if (original.Alg == BucketAlg.Uniform)
                        {
                            throw new UniformCloneFailed();
                        }
                        items.Add(item);
                        weights.Add(original.ItemWeights[i]);
                    }
                }
                else
                {
                    var child = Clone(item, classId);
                    if (original.Alg == BucketAlg.Uniform)
                    {
                        throw new UniformCloneFailed();
                    }
                    items.Add(child);
                    weights.Add(_buckets[-1 - child]!.Weight);
                }
            }
            int id;
            if (_pinnedShadowIds.TryGetValue(originalId, out var pins) && pins.TryGetValue(classId, out var pinned))
            {
                id = pinned;
            }
            else
            {
                id = -1;
                while (BucketExists(id) || _classLineIds.Contains(id))
                {
                    id--;
                }
            }
            var clone = new CrushBucket(id, name, original.TypeId, original.Alg, original.Hash, items.ToArray(), weights.ToArray(), def.Tunables.StrawCalcVersion)
            {
                IsShadow = true,
                ClassId = classId,
                ShadowOf = originalId,
            };
            Store(clone, default);
            _itemIds[name] = id;
            if (!_shadowIds.TryGetValue(originalId, out var map))
            {
                _shadowIds[originalId] = map = [];
            }
            map[classId] = id;
            return id;
        }

        private CrushRule CompileRule(RuleDef r)
        {
            var steps = new CrushStep[r.Steps.Count];
            for (var i = 0; i < steps.Length; i++)
            {
                var s = r.Steps[i];
                switch (s.Op)
                {
                    case RuleOp.Take:
                        {
                            var itemName = s.ItemName ?? throw new CrushMapException($"rule '{r.Name}': take needs an item", s.Position);
                            if (!_itemIds.TryGetValue(itemName, out var item))
                            {
                                throw new CrushMapException($"rule '{r.Name}' takes '{itemName}', which is not a defined bucket or device", s.Position);
                            }
                            if (s.ItemClass is { } cls)
                            {
                                if (!_classIds.TryGetValue(cls, out var cid))
                                {
                                    throw new CrushMapException($"rule '{r.Name}': class '{cls}' does not exist (no device has it)", s.Position);
                                }
                                if (!_shadowIds.TryGetValue(item, out var byClass) || !byClass.TryGetValue(cid, out var shadow))
                                {
                                    throw new CrushMapException($"rule '{r.Name}': '{itemName}' has no shadow tree for class '{cls}' (define it before the first rule)", s.Position);
                                }
                                item = shadow;
                            }
                            steps[i] = new CrushStep(RuleOp.Take, item, 0, itemName, s.ItemClass);
                            break;
                        }
                    case RuleOp.ChooseFirstN or RuleOp.ChooseIndep or RuleOp.ChooseLeafFirstN or RuleOp.ChooseLeafIndep:
                        {
                            var typeName = s.TypeName ?? throw new CrushMapException($"rule '{r.Name}': choose needs a type", s.Position);
                            if (!_typeIds.TryGetValue(typeName, out var typeId))
                            {
                                throw new CrushMapException($"rule '{r.Name}' chooses unknown type '{typeName}'", s.Position);
                            }
                            steps[i] = new CrushStep(s.Op, s.Arg1, typeId);
                            break;
                        }
                    default:
                        if (s.Op is RuleOp.SetChooseTries or RuleOp.SetChooseLeafTries or RuleOp.SetChooseLocalTries or RuleOp.SetChooseLocalFallbackTries)
                        {
                            CheckTries($"rule '{r.Name}': the number of tries", s.Arg1, s.Position);
                        }
                        steps[i] = new CrushStep(s.Op, s.Arg1, 0);
                        break;
                }
            }
            return new CrushRule(r.Id, r.Name, r.Type, r.MinSize, r.MaxSize, steps);
        }
    }

    /// <summary>
    /// The definition that compiles back to this map: non-shadow buckets in order with explicit ids, explicit
    /// weights and pinned shadow ids (what `crushtool -d` prints). Callers may change it and compile again.
    /// </summary>
    public CrushMapDefinition ToDefinition()
    {
        var def = new CrushMapDefinition
        {
            Tunables = Tunables,
            ClassOrder = Classes.ToList(),
        };
        foreach (var t in WrittenTunables)
        {
            def.WrittenTunables.Add(t);
        }
        def.Devices.AddRange(Devices.Select(d => d with { Position = default }));
        def.Types.AddRange(Types.Select(t => t with { Position = default }));
        foreach (var id in BucketOrder)
        {
            var b = GetBucket(id)!;
            var bd = new BucketDef
            {
                TypeName = GetTypeName(b.TypeId)!,
                Name = b.Name,
                Id = b.Id,
                Alg = b.Alg,
                Hash = b.Hash,
            };
            if (ShadowIds.TryGetValue(b.Id, out var shadows))
            {
                foreach (var (cid, sid) in shadows.OrderBy(kv => kv.Key))
                {
                    bd.ShadowIds.Add(new ShadowIdDef(sid, Classes[cid]));
                }
            }
            for (var i = 0; i < b.ItemsArray.Length; i++)
            {
                bd.Items.Add(new ItemDef(GetItemName(b.ItemsArray[i]) ?? $"osd.{b.ItemsArray[i]}", b.ItemWeights[i], null));
            }
            def.Buckets.Add(bd);
        }
        foreach (var r in Rules)
        {
            var rd = new RuleDef { Name = r.Name, Id = r.Id, Type = r.Type, MinSize = r.MinSize, MaxSize = r.MaxSize };
            foreach (var s in r.StepsArray)
            {
                rd.Steps.Add(s.Op switch
                {
                    RuleOp.Take => new StepDef(RuleOp.Take, 0, s.ItemName ?? GetItemName(s.Arg1), s.ItemClass),
                    RuleOp.ChooseFirstN or RuleOp.ChooseIndep or RuleOp.ChooseLeafFirstN or RuleOp.ChooseLeafIndep =>
                        new StepDef(s.Op, s.Arg1, TypeName: GetTypeName(s.Arg2)),
                    _ => new StepDef(s.Op, s.Arg1),
                });
            }
            def.Rules.Add(rd);
        }
        return def;
    }
}
