namespace Appliance.Crush.Model;

/// <summary>
/// A compiled CRUSH map: ids assigned, weights resolved, device-class shadow trees built, exactly as `crushtool -c`
/// builds them. Immutable and safe to share between threads.
/// </summary>
public sealed partial class CrushMap
{
    private readonly CrushBucket?[] _buckets;
    private readonly Dictionary<string, int> _itemIds;
    private readonly Dictionary<int, CrushRule> _rulesById;
    private readonly Dictionary<int, int> _deviceClass;
    private readonly Dictionary<int, string> _typeNames;

    private CrushMap(
        CrushTunables tunables, IReadOnlyList<DeviceDef> devices, IReadOnlyList<TypeDef> types, IReadOnlyList<string> classes,
        CrushBucket?[] buckets, IReadOnlyList<int> bucketOrder, IReadOnlyList<CrushRule> rules, Dictionary<string, int> itemIds,
        Dictionary<int, int> deviceClass, Dictionary<int, Dictionary<int, int>> shadowIds, int maxDevices, HashSet<string> writtenTunables)
    {
        Tunables = tunables;
        Devices = devices;
        Types = types;
        Classes = classes;
        _buckets = buckets;
        BucketOrder = bucketOrder;
        Rules = rules;
        _itemIds = itemIds;
        _deviceClass = deviceClass;
        ShadowIds = shadowIds;
        MaxDevices = maxDevices;
        WrittenTunables = writtenTunables;
        _rulesById = rules.ToDictionary(r => r.Id);
        _typeNames = types.ToDictionary(t => t.Id, t => t.Name);
    }

    public CrushTunables Tunables { get; }
    /// <summary>Tunables that were written in the source text (kept so a round trip writes them again).</summary>
    public IReadOnlySet<string> WrittenTunables { get; }
    public IReadOnlyList<DeviceDef> Devices { get; }
    public IReadOnlyList<TypeDef> Types { get; }
    /// <summary>Device class names; the index is the class id.</summary>
    public IReadOnlyList<string> Classes { get; }
    /// <summary>Ids of the non-shadow buckets in definition order (children before parents).</summary>
    public IReadOnlyList<int> BucketOrder { get; }
    public IReadOnlyList<CrushRule> Rules { get; }
    /// <summary>For each non-shadow bucket id that has shadows: class id → shadow bucket id.</summary>
    public IReadOnlyDictionary<int, Dictionary<int, int>> ShadowIds { get; }
    /// <summary>1 + the largest device id in any bucket or device line (0 if none).</summary>
    public int MaxDevices { get; }
    /// <summary>Length of the bucket array (the most negative bucket id is -MaxBuckets).</summary>
    public int MaxBuckets => _buckets.Length;

    /// <summary>All buckets, shadow ones included, in id order -1, -2, ...</summary>
    public IEnumerable<CrushBucket> Buckets => _buckets.Where(b => b is not null)!;

    internal CrushBucket?[] BucketArray => _buckets;

    public CrushBucket? GetBucket(int id)
    {
        var index = -1 - id;
        return id < 0 && index < _buckets.Length ? _buckets[index] : null;
    }

    /// <summary>The id of a device or bucket by name (shadow buckets by their `B~class` name).</summary>
    public bool TryGetItemId(string name, out int id) => _itemIds.TryGetValue(name, out id);

    public string? GetItemName(int id) =>
        id < 0 ? GetBucket(id)?.Name : Devices.FirstOrDefault(d => d.Id == id)?.Name;

    public string? GetTypeName(int typeId) => _typeNames.GetValueOrDefault(typeId);

    public int? GetTypeId(string name) => Types.FirstOrDefault(t => t.Name == name)?.Id;

    /// <summary>The class id of a device, or -1.</summary>
    public int GetDeviceClass(int device) => _deviceClass.TryGetValue(device, out var c) ? c : -1;

    public CrushRule? GetRule(int id) => _rulesById.GetValueOrDefault(id);

    /// <summary>Finds a rule by its numeric id or its name.</summary>
    public CrushRule? FindRule(string idOrName)
    {
        var byName = Rules.FirstOrDefault(r => r.Name == idOrName);
        if (byName is not null)
        {
            return byName;
        }
        return int.TryParse(idOrName, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out var id)
            ? GetRule(id)
            : null;
    }

    /// <summary>
    /// The reweight vector crushtool uses: 0x10000 for every device id that is an item of some bucket, 0 for the
    /// others; length <see cref="MaxDevices"/>.
    /// </summary>
    public uint[] DefaultReweights()
    {
        var weights = new uint[MaxDevices];
        foreach (var b in Buckets)
        {
            foreach (var item in b.ItemsArray)
            {
                if (item >= 0 && item < weights.Length)
                {
                    weights[item] = 0x10000;
                }
            }
        }
        return weights;
    }

    /// <summary>The buckets (non-shadow) that contain the given item, with the item's position.</summary>
    public IEnumerable<(CrushBucket Bucket, int Index)> ParentsOf(int item)
    {
        foreach (var id in BucketOrder)
        {
            var b = GetBucket(id)!;
            for (var i = 0; i < b.ItemsArray.Length; i++)
            {
                if (b.ItemsArray[i] == item)
                {
                    yield return (b, i);
                }
            }
        }
    }
}
