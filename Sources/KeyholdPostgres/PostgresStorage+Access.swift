import Foundation
import KeyholdCore
import PostgresNIO

