// BrokerLogger.java — set one of a running broker's loggers through the Admin API
// (broker-logger config, as kafka-configs.sh --entity-type broker-loggers does; the
// stack installs Kafka's jars, not its scripts).  Used by broker-requests.sh.
//
//   java -cp <dir>:<kafka lib>/* BrokerLogger <bootstrap> <broker id> <logger> <level>
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.common.config.ConfigResource;

public class BrokerLogger {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", args[0]);
        try (Admin admin = Admin.create(p)) {
            ConfigResource broker = new ConfigResource(ConfigResource.Type.BROKER_LOGGER, args[1]);
            AlterConfigOp set = new AlterConfigOp(new ConfigEntry(args[2], args[3]), AlterConfigOp.OpType.SET);
            admin.incrementalAlterConfigs(Map.of(broker, List.of(set))).all().get();
        }
    }
}
