namespace Appliance.Crush.Model;

/// <summary>Where something was written in a map text (1-based), so errors can name it. (0, 0) when not from text.</summary>
public readonly record struct SourcePosition(int Line, int Column)
{
    public override string ToString() => Line == 0 ? "" : $"line {Line}, column {Column}";
}

/// <summary>The bucket algorithms of CRUSH, with Ceph's numeric codes.</summary>
public enum BucketAlg
{
    Uniform = 1,
    List = 2,
    Tree = 3,
    Straw = 4,
    Straw2 = 5,
}

/// <summary>The rule step operations, with Ceph's numeric codes.</summary>
public enum RuleOp
{
    Noop = 0,
    Take = 1,
    ChooseFirstN = 2,
    ChooseIndep = 3,
    Emit = 4,
    ChooseLeafFirstN = 6,
    ChooseLeafIndep = 7,
    SetChooseTries = 8,
    SetChooseLeafTries = 9,
    SetChooseLocalTries = 10,
    SetChooseLocalFallbackTries = 11,
    SetChooseLeafVaryR = 12,
    SetChooseLeafStable = 13,
}

/// <summary>The map-wide tunables. Defaults are the legacy ("argonaut") values, as for a map text that omits them.</summary>
public sealed record CrushTunables
{
    public int ChooseLocalTries { get; init; } = 2;
    public int ChooseLocalFallbackTries { get; init; } = 5;
    public int ChooseTotalTries { get; init; } = 19;
    public int ChooseLeafDescendOnce { get; init; }
    public int ChooseLeafVaryR { get; init; }
    public int ChooseLeafStable { get; init; }
    public int StrawCalcVersion { get; init; }
    /// <summary>Bit mask of allowed bucket algorithms (1 &lt;&lt; alg); does not affect mapping.</summary>
    public int AllowedBucketAlgs { get; init; } = 22;

    public static CrushTunables Legacy { get; } = new();

    /// <summary>The "jewel"/optimal profile (Ceph Pacific's default for new clusters).</summary>
    public static CrushTunables Optimal { get; } = new()
    {
        ChooseLocalTries = 0,
        ChooseLocalFallbackTries = 0,
        ChooseTotalTries = 50,
        ChooseLeafDescendOnce = 1,
        ChooseLeafVaryR = 1,
        ChooseLeafStable = 1,
        StrawCalcVersion = 1,
        AllowedBucketAlgs = 54,
    };

    /// <summary>The tunable names of the text format, in the order crushtool writes them.</summary>
    public static IReadOnlyList<string> Names { get; } =
    [
        "choose_local_tries", "choose_local_fallback_tries", "choose_total_tries", "chooseleaf_descend_once",
        "chooseleaf_vary_r", "chooseleaf_stable", "straw_calc_version", "allowed_bucket_algs",
    ];

    public int Get(string name) => name switch
    {
        "choose_local_tries" => ChooseLocalTries,
        "choose_local_fallback_tries" => ChooseLocalFallbackTries,
        "choose_total_tries" => ChooseTotalTries,
        "chooseleaf_descend_once" => ChooseLeafDescendOnce,
        "chooseleaf_vary_r" => ChooseLeafVaryR,
        "chooseleaf_stable" => ChooseLeafStable,
        "straw_calc_version" => StrawCalcVersion,
        "allowed_bucket_algs" => AllowedBucketAlgs,
        _ => throw new ArgumentException($"unknown tunable '{name}'", nameof(name)),
    };

    /// <summary>Returns a copy with one tunable changed, or null if the name is not a tunable.</summary>
    public CrushTunables? With(string name, int value) => name switch
    {
        "choose_local_tries" => this with { ChooseLocalTries = value },
        "choose_local_fallback_tries" => this with { ChooseLocalFallbackTries = value },
        "choose_total_tries" => this with { ChooseTotalTries = value },
        "chooseleaf_descend_once" => this with { ChooseLeafDescendOnce = value },
        "chooseleaf_vary_r" => this with { ChooseLeafVaryR = value },
        "chooseleaf_stable" => this with { ChooseLeafStable = value },
        "straw_calc_version" => this with { StrawCalcVersion = value },
        "allowed_bucket_algs" => this with { AllowedBucketAlgs = value },
        _ => null,
    };
}

/// <summary>A `device ID NAME [class C]` line.</summary>
public sealed record DeviceDef(int Id, string Name, string? Class, SourcePosition Position = default);

/// <summary>A `type ID NAME` line.</summary>
public sealed record TypeDef(int Id, string Name, SourcePosition Position = default);

/// <summary>An `item NAME [weight W] [pos P]` line. Weight is 16.16 fixed point; null means "not written".</summary>
public sealed record ItemDef(string Name, uint? Weight, int? Pos, SourcePosition Position = default);

/// <summary>An `id -N class C` line: pins the id of the bucket's shadow for class C.</summary>
public sealed record ShadowIdDef(int Id, string Class, SourcePosition Position = default);

/// <summary>A bucket block as written in a map text (before ids are assigned and weights resolved).</summary>
public sealed class BucketDef
{
    public required string TypeName { get; init; }
    public required string Name { get; init; }
    /// <summary>The plain `id -N` line, or null to let the compiler choose.</summary>
    public int? Id { get; set; }
    public List<ShadowIdDef> ShadowIds { get; init; } = [];
    public BucketAlg Alg { get; set; } = BucketAlg.Straw2;
    public int Hash { get; set; }
    public List<ItemDef> Items { get; init; } = [];
    public SourcePosition Position { get; init; }
}

/// <summary>One `step ...` line of a rule.</summary>
public sealed record StepDef(RuleOp Op, int Arg1 = 0, string? ItemName = null, string? ItemClass = null, string? TypeName = null, SourcePosition Position = default);

/// <summary>A rule block as written.</summary>
public sealed class RuleDef
{
    public required string Name { get; init; }
    public int Id { get; set; }
    /// <summary>1 replicated, 3 erasure (Ceph's codes); other values are kept as numbers.</summary>
    public int Type { get; set; } = 1;
    public int MinSize { get; set; } = 1;
    public int MaxSize { get; set; } = 10;
    public List<StepDef> Steps { get; init; } = [];
    public SourcePosition Position { get; init; }
}

/// <summary>
/// A CRUSH map as a person writes it (the content of a map text, in file order). <see cref="CrushMap.Compile"/>
/// turns it into a map the mapper can use; <see cref="CrushMap.ToDefinition"/> goes back.
/// </summary>
public sealed class CrushMapDefinition
{
    public CrushTunables Tunables { get; set; } = CrushTunables.Legacy;
    /// <summary>Which tunables were written explicitly (the writer writes those and every non-legacy one).</summary>
    public HashSet<string> WrittenTunables { get; init; } = new(StringComparer.Ordinal);
    public List<DeviceDef> Devices { get; init; } = [];
    public List<TypeDef> Types { get; init; } = [];
    public List<BucketDef> Buckets { get; init; } = [];
    public List<RuleDef> Rules { get; init; } = [];
    /// <summary>
    /// How many of <see cref="Buckets"/> came before the first rule in the text: crushtool builds the device-class
    /// shadow trees when it reaches the first rule, so later buckets get none. Null: all of them.
    /// </summary>
    public int? BucketsBeforeFirstRule { get; set; }
    /// <summary>Class names in order of first appearance in the text (class ids follow it). Null: devices, then buckets.</summary>
    public List<string>? ClassOrder { get; set; }
}
