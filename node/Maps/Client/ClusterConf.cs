using System.Globalization;
using System.Net;
using Appliance.Wire.Auth;

namespace Appliance.Maps.Client;

/// <summary>
/// What every node and client needs to find the cluster: its fsid, when it was created, and the initial monitors
/// (name and address, in rank order). A text file, <c>cluster.conf</c>, in the cluster's configuration directory
/// beside <c>mon.keyring</c> (the monitors' shared key) and <c>client.admin.keyring</c>.
/// <code>
/// fsid = 6a1c…
/// created = 1795340000000
/// mon.a = 10.0.0.1:6789
/// initial = a,b,c
/// </code>
/// <c>initial</c> names the monitors the cluster was created with (they hold its first monmap; a monitor added later
/// with `appliance mon add` joins by catching up); without it every listed monitor is initial.
/// </summary>
public sealed record ClusterConf(Guid Fsid, long CreatedMs, IReadOnlyList<(string Name, string Address)> Monitors, IReadOnlyList<string>? InitialNames = null)
{
    /// <summary>The monitors the cluster was created with, in the order that gave their ids (1, 2, ...).</summary>
    public IReadOnlyList<(string Name, string Address)> Initial =>
        InitialNames is null ? Monitors : [.. InitialNames.Select(n => Monitors.FirstOrDefault(m => m.Name == n)).Where(m => m.Name is not null)];

    /// <summary>This configuration with monitor <paramref name="name"/> listed at <paramref name="address"/>.</summary>
    public ClusterConf WithMonitor(string name, string address) =>
        this with { Monitors = [.. Monitors.Where(m => m.Name != name), (name, address)], InitialNames = InitialNames ?? [.. Monitors.Select(m => m.Name)] };

    /// <summary>This configuration without monitor <paramref name="name"/> (it stays named as initial: ids do not move).</summary>
    public ClusterConf WithoutMonitor(string name) =>
        this with { Monitors = [.. Monitors.Where(m => m.Name != name)], InitialNames = InitialNames ?? [.. Monitors.Select(m => m.Name)] };

    /// <summary>Replaces the conf file in <paramref name="directory"/> atomically.</summary>
    public void Save(string directory)
    {
        var path = Path.Combine(directory, FileName);
        var tmp = path + ".tmp";
        File.WriteAllText(tmp, Format());
        File.Move(tmp, path, overwrite: true);
    }

    public const string FileName = "cluster.conf";
    public const string MonKeyringName = "mon.keyring";
    public const string AdminKeyringName = "client.admin.keyring";
    /// <summary>The keyring entry of the key all monitors share (any mon.NAME authenticates with it).</summary>
    public const string MonEntity = "mon.shared";

    public string Format()
    {
        var lines = new List<string>
        {
            $"fsid = {Fsid}",
            $"created = {CreatedMs.ToString(CultureInfo.InvariantCulture)}",
        };
        lines.AddRange(Monitors.Select(m => $"mon.{m.Name} = {m.Address}"));
        if (InitialNames is not null)
        {
            lines.Add($"initial = {string.Join(',', InitialNames)}");
        }
        return string.Join('\n', lines) + "\n";
    }

    public static ClusterConf Parse(string text, string source)
    {
        Guid? fsid = null;
        long? created = null;
        var mons = new List<(string, string)>();
        List<string>? initial = null;
        var n = 0;
        foreach (var raw in text.Split('\n'))
        {
            n++;
            var line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#'))
            {
                continue;
            }
            var eq = line.IndexOf('=');
            if (eq < 0)
            {
                throw new FormatException($"{source}:{n}: expected `key = value`");
            }
            var key = line[..eq].Trim();
            var value = line[(eq + 1)..].Trim();
            if (key == "fsid")
            {
                fsid = Guid.TryParse(value, out var g) ? g : throw new FormatException($"{source}:{n}: fsid is not a uuid");
            }
            else if (key == "created")
            {
                created = long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var c) ? c
                    : throw new FormatException($"{source}:{n}: created is not a number of milliseconds");
            }
            else if (key == "initial")
            {
                initial = [.. value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)];
            }
            else if (key.StartsWith("mon.", StringComparison.Ordinal) && key.Length > 4)
            {
                ParseEndpoint(value, $"{source}:{n}");
                mons.Add((key[4..], value));
            }
            else
            {
                throw new FormatException($"{source}:{n}: unknown key {key}");
            }
        }
        if (fsid is null || created is null || mons.Count == 0)
        {
            throw new FormatException($"{source}: needs fsid, created and at least one mon.NAME = ADDRESS");
        }
        return new ClusterConf(fsid.Value, created.Value, mons, initial);
    }

    public static ClusterConf Load(string directory)
    {
        var path = Path.Combine(directory, FileName);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"no {FileName} in {directory}: create a cluster with `appliance mon bootstrap --conf-dir {directory} --mon NAME=ADDR:PORT`", path);
        }
        return Parse(File.ReadAllText(path), path);
    }

    public static IPEndPoint ParseEndpoint(string text, string where)
    {
        if (!IPEndPoint.TryParse(text, out var ep) || ep.Port == 0)
        {
            throw new FormatException($"{where}: {text} is not an ADDRESS:PORT");
        }
        return ep;
    }

    /// <summary>Writes a new cluster's configuration directory: conf, monitor keyring and admin keyring (0600).
    /// Refuses to overwrite an existing cluster.</summary>
    public static ClusterConf Bootstrap(string directory, IReadOnlyList<(string Name, string Address)> monitors, DateTimeOffset now)
    {
        Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, FileName);
        if (File.Exists(path))
        {
            throw new IOException($"{path} exists: this directory already holds a cluster (remove it first to make a new one)");
        }
        foreach (var (name, address) in monitors)
        {
            ParseEndpoint(address, $"mon.{name}");
        }
        var conf = new ClusterConf(Guid.NewGuid(), now.ToUnixTimeMilliseconds(), monitors, [.. monitors.Select(m => m.Name)]);
        var mon = new Keyring();
        mon.Add(new KeyringEntry(MonEntity, Secret.Generate(), new Dictionary<string, string> { ["mon"] = "allow *" }));
        mon.Save(Path.Combine(directory, MonKeyringName));
        var admin = new Keyring();
        admin.Add(new KeyringEntry("client.admin", Secret.Generate(), new Dictionary<string, string> { ["mon"] = "allow *", ["osd"] = "allow *" }));
        admin.Save(Path.Combine(directory, AdminKeyringName));
        // The conf last: a directory with a conf is a whole cluster definition.
        var tmp = path + ".tmp";
        File.WriteAllText(tmp, conf.Format());
        File.Move(tmp, path);
        return conf;
    }
}
