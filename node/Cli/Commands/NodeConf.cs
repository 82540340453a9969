using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using Appliance.Cli.Common;

namespace Appliance.Cli.Commands;

/// <summary>
/// This node's own settings, CONF_DIR/node.conf, written by `appliance bootstrap` and `appliance join`:
/// <code>
/// name = n1              (its CRUSH host, and its monitor's name when it runs one)
/// addr = 10.0.0.11       (the address its daemons listen on)
/// public_network = 10.0.0.0/24
/// </code>
/// A configuration directory without it (one of `cluster up`, or made by hand) is a node named after the machine
/// whose OSDs listen on loopback.
/// </summary>
internal sealed record NodeConf(string Name, string Address, string? PublicNetwork)
{
    public const string FileName = "node.conf";

    public static NodeConf? Load(string confDir)
    {
        var path = Path.Combine(confDir, FileName);
        if (!File.Exists(path))
        {
            return null;
        }
        var values = new Dictionary<string, string>();
        foreach (var line in File.ReadAllLines(path))
        {
            var eq = line.IndexOf('=');
            if (eq > 0 && !line.TrimStart().StartsWith('#'))
            {
                values[line[..eq].Trim()] = line[(eq + 1)..].Trim();
            }
        }
        if (!values.TryGetValue("name", out var name) || !values.TryGetValue("addr", out var addr) || !IPAddress.TryParse(addr, out _))
        {
            throw new CliException(ExitCodes.InvalidInput, $"{path} needs `name = NAME` and `addr = IP`");
        }
        return new NodeConf(name, addr, values.GetValueOrDefault("public_network"));
    }

    public void Save(string confDir)
    {
        Directory.CreateDirectory(confDir);
        var path = Path.Combine(confDir, FileName);
        File.WriteAllText(path + ".tmp", $"name = {Name}\naddr = {Address}\n{(PublicNetwork is null ? "" : $"public_network = {PublicNetwork}\n")}");
        File.Move(path + ".tmp", path, overwrite: true);
    }

    /// <summary>A node or monitor name: letters, digits, '-' and '_', starting with a letter or digit, at most 63.</summary>
    public static string CheckName(string name, string option)
    {
        if (name.Length is 0 or > 63 || !char.IsAsciiLetterOrDigit(name[0]) || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
        {
            throw new CliException(ExitCodes.Usage, $"{option} {name}: a name is 1 to 63 letters, digits, '-' or '_'");
        }
        return name;
    }

    /// <summary>The machine's short host name, as a node name.</summary>
    public static string DefaultName() => Environment.MachineName.Split('.')[0];

    /// <summary>
    /// The address this node's daemons use: <paramref name="ip"/> when given (it must be one of this machine's), else
    /// this machine's address inside <paramref name="network"/> (CIDR), else its first non-loopback IPv4 address.
    /// </summary>
    public static IPAddress ChooseAddress(IPAddress? ip, string? network)
    {
        var mine = NetworkInterface.GetAllNetworkInterfaces()
            .Where(n => n.OperationalStatus is OperationalStatus.Up or OperationalStatus.Unknown)
            .SelectMany(n => n.GetIPProperties().UnicastAddresses.Select(u => u.Address)).ToList();
        IPNetwork? cidr = null;
        if (network is not null)
        {
            cidr = IPNetwork.TryParse(network, out var parsed) ? parsed
                : throw new CliException(ExitCodes.Usage, $"--public-network {network}: write a CIDR such as 10.0.0.0/24");
        }
        if (ip is not null)
        {
            if (!mine.Contains(ip))
            {
                throw new CliException(ExitCodes.InvalidInput, $"{ip} is not an address of this machine ({string.Join(", ", mine)}); give one of them");
            }
            if (cidr is { } n && !n.Contains(ip))
            {
                throw new CliException(ExitCodes.InvalidInput, $"{ip} is not inside --public-network {network}");
            }
            return ip;
        }
        if (cidr is { } c)
        {
            return mine.FirstOrDefault(c.Contains)
                ?? throw new CliException(ExitCodes.InvalidInput, $"no address of this machine is inside --public-network {network} ({string.Join(", ", mine)})");
        }
        return mine.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork && !IPAddress.IsLoopback(a))
            ?? throw new CliException(ExitCodes.InvalidInput, "this machine has no IPv4 address but loopback; give --mon-ip");
    }
}
